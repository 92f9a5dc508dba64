"""REST systems over ``requests``: paged, windowed listings and create-or-update by external key.

How it fits the connector protocol: an endpoint of the system plays the part of a table;
its items are JSON objects whose members play the part of columns. JSON carries values as
text, so :meth:`RestSystem.table` describes every member as a ``String`` column and the
canonical text goes over the wire unchanged.

Reliability is layered:

* urllib3 ``Retry`` under the session: exponential backoff with jitter, ``Retry-After``
  honoured on 429 and 503 (capped by ``backoff_max``), retries on connection errors,
  read timeouts and 429/5xx. Connect and read timeouts are always set.
* Two sessions, because urllib3 decides retryability by method alone and never sees the
  request headers: the plain one retries only idempotent methods; the keyed one also
  retries POST and PATCH and is used only for requests that carry an ``Idempotency-Key``,
  so a retried create can never make a second record.
* A per-system requests-per-second ceiling shared by every connector in the process.
  Retries inside urllib3 are spaced by the backoff, not by the ceiling.

Windows are read keyset-style on the change time (each request starts at the last change
time seen), so records changing during the read cannot shift an offset past another; items
sharing one change time are read as a group, by key where the API can order by key.

Errors name the system, the method, the endpoint path and the status; the credentials
travel only in request headers, which no message, log line or exception ever contains.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth
from sqlalchemy import Column, MetaData, String, Table
from urllib3.util.retry import Retry

from truesync.config import EntityMapping
from truesync.connectors.errors import ConfigurationProblem, RecordsRejected, SystemUnavailable
from truesync.connectors.rest.settings import EndpointConfig, RestConfig
from truesync.core.canonical import parse_utc_naive
from truesync.support.connections import HttpConnection

RETRY_STATUSES = (429, 500, 502, 503, 504)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
KEYED = IDEMPOTENT | {"POST", "PATCH"}
TIE = timedelta(microseconds=1)


class BadResponse(ConfigurationProblem):
    """The API answered, but not as configured: unexpected status, not JSON, no item list."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


REJECTED = frozenset({400, 409, 422})  # the API refuses this one record; others can still be written
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class _CappedRetry(Retry):
    """``Retry-After`` is honoured, but never beyond ``backoff_max``: a task must not sleep for hours."""

    def get_retry_after(self, response: Any) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, self.backoff_max)


class _HeaderAuth(AuthBase):
    """A secret sent in one header (bearer token or API key); its repr never shows it."""

    def __init__(self, header: str, value: str) -> None:
        self._header, self._value = header, value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self._header] = self._value
        return request

    def __repr__(self) -> str:
        return f"_HeaderAuth({self._header}: ***)"


class RateLimiter:
    """At most ``per_second`` request starts per second, across threads: a minimum interval."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            time.sleep(at - now)


_LIMITERS: dict[tuple[str, float], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter(system: str, per_second: float) -> RateLimiter:
    """The process-wide limiter of a system, so several connectors to it share one ceiling."""
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault((system, per_second), RateLimiter(per_second))


def _auth(config: RestConfig, conn: HttpConnection) -> AuthBase | None:
    kind = config.auth.type
    if kind == "none":
        return None
    if not conn.password:
        raise ConfigurationProblem(f"auth type '{kind}' needs a password (the secret) in the connection")
    url = urlsplit(conn.base_url)
    if url.scheme != "https" and url.hostname not in LOOPBACK:
        raise ConfigurationProblem(
            f"auth type '{kind}' over plain {url.scheme}://{url.hostname}: credentials go only over https "
            "(or to a loopback host)"
        )
    if kind == "basic":
        return HTTPBasicAuth(conn.login or "", conn.password)
    if kind == "bearer":
        return _HeaderAuth("Authorization", f"Bearer {conn.password}")
    return _HeaderAuth(config.auth.header, conn.password)


def _session(config: RestConfig, conn: HttpConnection, methods: frozenset[str]) -> requests.Session:
    retry = _CappedRetry(
        total=config.retries,
        connect=config.retries,
        read=config.retries,
        status=config.retries,
        other=0,
        backoff_factor=config.backoff_factor,
        backoff_jitter=config.backoff_jitter,
        backoff_max=config.backoff_max,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=methods,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.auth = _auth(config, conn)
    session.headers.update({"Accept": "application/json", **config.headers})
    return session


def _iso(value: datetime) -> str:
    """Naive times are UTC throughout the engine; the API is told so explicitly."""
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()


def idempotency_key(*parts: Any) -> str:
    """A deterministic key for one write: every retry of it, and a rerun of it, sends the same key.

    Creates are keyed by the run, the record's key and content: urllib3's retries and
    Airflow's task retries share the run id, so they replay; a record deleted in the API and
    created again by a later run is a new write. Updates are keyed by the record as it was
    seen before the change, so a value changed back later is a new write too.
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


class RestSystem:
    """One HTTP API: windowed listings, lookups by external key, create-or-update."""

    def __init__(self, name: str, config: RestConfig, conn: HttpConnection) -> None:
        self.name = name
        self.config = config
        self.base_url = conn.base_url
        self._plain = _session(config, conn, IDEMPOTENT)
        self._keyed = _session(config, conn, KEYED)
        self._limiter = limiter(name, config.rate_limit) if config.rate_limit else None
        self._tables: dict[str, Table] = {}

    def describe(self) -> str:
        return f"system '{self.name}' ({self.base_url})"

    # --- HTTP ------------------------------------------------------------------------------

    def _where(self, method: str, path: str) -> str:
        return f"system '{self.name}' {method} {path}"

    def _request(
        self,
        method: str,
        path: str,
        *,
        url: str | None = None,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> requests.Response:
        """One call with retries; a final 429/5xx or no answer is transient, other non-2xx are not."""
        if self._limiter:
            self._limiter.wait()
        session = self._keyed if key else self._plain
        try:
            response = session.request(
                method,
                url or self.base_url + path,
                params=params,
                json=body,
                headers={"Idempotency-Key": key} if key else None,
                timeout=(self.config.connect_timeout, self.config.read_timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise SystemUnavailable(
                f"{self._where(method, path)}: no answer after {self.config.retries} retries ({type(exc).__name__})"
            ) from None
        if response.status_code in RETRY_STATUSES:
            raise SystemUnavailable(
                f"{self._where(method, path)}: status {response.status_code} after {self.config.retries} retries"
            )
        if not 200 <= response.status_code < 300:
            raise BadResponse(
                f"{self._where(method, path)}: unexpected status {response.status_code}", response.status_code
            )
        return response

    def _json(self, response: requests.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            raise BadResponse(
                f"{self._where(method, path)}: status {response.status_code}, response is not JSON ({kind})"
            ) from None

    def _items(
        self, endpoint: EndpointConfig, response: requests.Response, need: str | None = None
    ) -> tuple[list[dict[str, Any]], Any]:
        """The item list of a listing page, and the body it came in; every item must hold ``need``."""
        body = self._json(response, "GET", endpoint.path)
        where = f"{self._where('GET', endpoint.path)}: status {response.status_code}"
        if endpoint.items_field and not isinstance(body, dict):
            raise BadResponse(
                f"{where}, the body is not an object holding '{endpoint.items_field}'", response.status_code
            )
        items = body.get(endpoint.items_field) if endpoint.items_field else body
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            part = f"field '{endpoint.items_field}'" if endpoint.items_field else "the body"
            raise BadResponse(f"{where}, {part} is not a list of objects", response.status_code)
        lacking = next((i for i in items if need is not None and i.get(need) is None), None)
        if lacking is not None:
            raise BadResponse(f"{where}, an item has no '{need}' member", response.status_code)
        return items, body

    # --- listings --------------------------------------------------------------------------

    def _endpoint(self, mapping: EntityMapping) -> EndpointConfig:
        return self.config.endpoints[mapping.table]

    def _first_page(self, endpoint: EndpointConfig, params: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
        """The first page of a listing, whatever the pagination style: keyset reads need no more."""
        paging = endpoint.pagination
        query = {**params, paging.size_param: paging.page_size}
        if paging.style == "page":
            query[paging.page_param] = 1
        elif paging.style == "offset":
            query[paging.offset_param] = 0
        return self._items(endpoint, self._request("GET", endpoint.path, params=query))

    def _pages(
        self, endpoint: EndpointConfig, params: dict[str, Any], need: str | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of a listing in the endpoint's pagination style.

        Page and offset listings end on an empty page or when the total is reached, never on a
        short page (an API may cap the page size below ours); cursor and link listings end
        when no next token is given, whatever the page held.
        """
        paging = endpoint.pagination
        query: dict[str, Any] = {**params, paging.size_param: paging.page_size}
        url: str | None = None
        number, offset, token = 1, 0, None
        while True:
            if paging.style == "page":
                query[paging.page_param] = number
            elif paging.style == "offset":
                query[paging.offset_param] = offset
            elif paging.style == "cursor" and token is not None:
                query[paging.cursor_param] = token
            response = self._request("GET", endpoint.path, url=url, params=None if url else query)
            items, body = self._items(endpoint, response, need)
            if paging.style in ("page", "offset"):
                if not items:
                    return
                yield items
                number, offset = number + 1, offset + len(items)
                total = self._total(endpoint, body, response)
                if total is not None and offset >= total:
                    return
                continue
            yield items
            following = self._next(endpoint, body, response)
            if following is None:
                return
            if not items and following in (token, url):
                raise BadResponse(f"{self._where('GET', endpoint.path)}: an empty page points at itself as next")
            if paging.style == "cursor":
                token = following
            else:
                url = following

    def _next(self, endpoint: EndpointConfig, body: Any, response: requests.Response) -> str | None:
        """The next page's token (cursor) or URL (link), or None at the end."""
        if endpoint.pagination.style == "link":
            url = response.links.get("next", {}).get("url")
            if url is not None:
                self._check_same_origin(url, endpoint.path)
            return url
        following = body.get(endpoint.pagination.next_field) if isinstance(body, dict) else None
        return str(following) if following else None

    def _total(self, endpoint: EndpointConfig, body: Any, response: requests.Response) -> int | None:
        """The listing's total when the endpoint names a ``total_field``."""
        if endpoint.total_field is None:
            return None
        total = body.get(endpoint.total_field) if isinstance(body, dict) else None
        if isinstance(total, bool) or not isinstance(total, int):
            raise BadResponse(
                f"{self._where('GET', endpoint.path)}: status {response.status_code}, "
                f"field '{endpoint.total_field}' is not a count",
                response.status_code,
            )
        return total

    def _check_same_origin(self, url: str, path: str) -> None:
        """A next link elsewhere would carry the credentials to another host: refuse it."""
        base, link = urlsplit(self.base_url), urlsplit(url)
        if (base.scheme, base.netloc) != (link.scheme, link.netloc):
            raise BadResponse(f"{self._where('GET', path)}: next link points to another host")

    def _listing(
        self, endpoint: EndpointConfig, params: dict[str, Any], need: str | None = None
    ) -> Iterator[dict[str, Any]]:
        for items in self._pages(endpoint, params, need):
            yield from items

    def _by_change_time(
        self, endpoint: EndpointConfig, mapping: EntityMapping, start: datetime, end: datetime
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``[start, end)`` read keyset-style: each request starts at the last change time seen.

        Offsets shift when an item changes during the read (it leaves the window and every
        later item moves up one place), so the next offset would skip an item. A request that
        starts at the last change time cannot skip: it re-reads that time's items, which the
        caller drops by key. A page made of one change time may be a tie group larger than a
        page; it is read on its own, once, and the next request starts just after it.
        """
        since = start
        while since < end:
            params = {**endpoint.params, endpoint.since_param: _iso(since), endpoint.until_param: _iso(end)}
            items, _ = self._first_page(endpoint, params)
            if not items:
                return
            times = self._change_times(endpoint, mapping, items)
            yield items
            if times[0] == times[-1]:
                yield self._tie_group(endpoint, mapping, times[-1])
                since = times[-1] + TIE
            else:
                since = times[-1]

    def _change_times(
        self, endpoint: EndpointConfig, mapping: EntityMapping, items: list[dict[str, Any]]
    ) -> list[datetime]:
        """The readable change times of a page, which must come in order: keyset paging relies on it."""
        times = [t for t in (parse_utc_naive(i.get(mapping.cursor)) for i in items) if t is not None]
        where = self._where("GET", endpoint.path)
        if not times:
            raise BadResponse(f"{where}: no item of the page has a readable '{mapping.cursor}' to page by")
        if times != sorted(times):
            raise BadResponse(f"{where}: the listing is not ordered by '{mapping.cursor}'")
        return times

    def _tie_group(self, endpoint: EndpointConfig, mapping: EntityMapping, ts: datetime) -> list[dict[str, Any]]:
        """Every item changed at exactly ``ts``, read by key order, or refused when that is impossible.

        Without key ordering an API may order ties differently from one request to the next,
        so a second page of them can skip some: that fails the task rather than losing items.
        """
        params = {**endpoint.params, endpoint.since_param: _iso(ts), endpoint.until_param: _iso(ts + TIE)}
        if endpoint.key_after_param is not None:
            return self._by_key(endpoint, mapping, params)
        group: list[dict[str, Any]] = []
        for number, items in enumerate(self._pages(endpoint, params)):
            if number and items:
                raise BadResponse(
                    f"{self._where('GET', endpoint.path)}: more than {len(group)} items share change time "
                    f"{_iso(ts)}, more than a page, and the endpoint has no key ordering (key_after_param)"
                )
            group += items
        return group

    def _by_key(self, endpoint: EndpointConfig, mapping: EntityMapping, params: dict[str, Any]) -> list[dict[str, Any]]:
        """A listing read in key order, each request asking for the keys after the last one seen."""
        assert endpoint.key_after_param is not None
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            query = params if after is None else {**params, endpoint.key_after_param: after}
            items, _ = self._first_page(endpoint, query)
            if not items:
                return found
            last = items[-1].get(mapping.key)
            if last is None or (after is not None and str(last) <= after):
                raise BadResponse(
                    f"{self._where('GET', endpoint.path)}: '{endpoint.key_after_param}' does not page by key"
                )
            found += items
            after = str(last)

    def extract(self, mapping: EntityMapping, start: datetime, end: datetime, size: int) -> Iterator[pd.DataFrame]:
        """Items changed in ``[start, end)``, page by page; repeats across pages are dropped by key."""
        endpoint = self._endpoint(mapping)
        seen: dict[str, datetime | None] = {}
        chunk: list[dict[str, Any]] = []
        for items in self._by_change_time(endpoint, mapping, start, end):
            for item in items:
                if _in_window(item.get(mapping.cursor), start, end) and _first_sight(item, mapping, seen):
                    chunk.append(item)
            while len(chunk) >= size:
                yield self._frame(chunk[:size], mapping)
                chunk = chunk[size:]
        if chunk:
            yield self._frame(chunk, mapping)

    def unwindowed_rows(self, mapping: EntityMapping, size: int) -> Iterator[pd.DataFrame]:
        """Items lacking key or change time, when the API can list them (``incomplete_params``).

        Read on every run, like the SQL connector's rows without key, so their exceptions stay
        open until the item is fixed.
        """
        endpoint = self._endpoint(mapping)
        if endpoint.incomplete_params is None:
            return
        chunk: list[dict[str, Any]] = []
        for item in self._listing(endpoint, dict(endpoint.incomplete_params)):
            if item.get(mapping.key) is None or parse_utc_naive(item.get(mapping.cursor)) is None:
                chunk.append(item)
            if len(chunk) >= size:
                yield self._frame(chunk, mapping)
                chunk = []
        if chunk:
            yield self._frame(chunk, mapping)

    def _frame(
        self, items: list[dict[str, Any]], mapping: EntityMapping, extra: list[str] | None = None
    ) -> pd.DataFrame:
        columns = list(dict.fromkeys(mapping.columns + (extra or [])))
        return pd.DataFrame([[item.get(c) for c in columns] for item in items], columns=columns, dtype=object)

    def table(self, mapping: EntityMapping) -> Table:
        """The endpoint's members as text columns; the first call checks the endpoint answers."""
        if mapping.table not in self._tables:
            endpoint = self._endpoint(mapping)
            self._json(
                self._request("GET", endpoint.path, params={endpoint.pagination.size_param: 1}), "GET", endpoint.path
            )
            columns = [Column(c, String) for c in mapping.columns]
            self._tables[mapping.table] = Table(mapping.table, MetaData(), *columns)
        return self._tables[mapping.table]

    # --- lookups and writes ----------------------------------------------------------------

    def _lookup(
        self, mapping: EntityMapping, keys: list[str], column: str | None = None, need: str | None = None
    ) -> list[dict[str, Any]]:
        """Items whose key (or ``column``) holds one of the values, ``max_keys`` values a request."""
        endpoint = self._endpoint(mapping)
        lookup = endpoint.lookup
        if lookup is None or (column is not None and column not in lookup.by):
            by = f" by '{column}'" if column else ""
            raise ConfigurationProblem(f"{self.describe()}: endpoint '{mapping.table}' has no lookup{by} configured")
        param = lookup.param if column is None else lookup.by[column]
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), lookup.max_keys):
            found += self._listing(endpoint, {param: keys[start : start + lookup.max_keys]}, need)
        return found

    def fetch(self, mapping: EntityMapping, keys: list[str]) -> pd.DataFrame:
        """Current items for ``keys``, found by the endpoint's lookup parameter."""
        return self._frame(self._lookup(mapping, keys), mapping)

    def fetch_by(self, mapping: EntityMapping, column: str, values: list[str]) -> pd.DataFrame:
        """Current items whose ``column`` holds one of ``values`` (``lookup.by`` names the parameter)."""
        return self._frame(self._lookup(mapping, values, column), mapping, [column])

    def write(self, mapping: EntityMapping, rows: list[dict[str, Any]], batch_size: int, run_id: str = "") -> int:
        """Create-or-update each row by its external key; returns how many rows were written.

        With a native upsert call, one call per row. Otherwise the records are looked up by
        key (``batch_size`` at a time): a new one is created with POST, an existing one gets
        PATCH (or PUT) of only the fields that differ. Every write carries an idempotency key
        (creates: the run and the record), so a retry whose first answer was lost does not
        apply twice. A record the API refuses (400, 409, 422) is skipped, and all of them are
        reported at the end by :class:`RecordsRejected`, so one bad record does not block the
        rest; any other failure stops the write, and what was sent before stays.
        """
        endpoint = self._endpoint(mapping)
        dropped = set(endpoint.read_only) | ({mapping.cursor} - set(mapping.fields.values()))
        clean = [{c: v for c, v in row.items() if c not in dropped} for row in rows]
        rejected: dict[str, str] = {}
        for start in range(0, len(clean), batch_size):
            batch = clean[start : start + batch_size]
            current = None if endpoint.upsert is not None else self._current(mapping, endpoint, batch)
            for row in batch:
                key = str(row[mapping.key])
                try:
                    if current is None:
                        self._upsert(mapping, endpoint, row, run_id)
                    else:
                        self._create_or_update(mapping, endpoint, row, current.get(key, []), run_id)
                except BadResponse as exc:
                    if exc.status not in REJECTED:
                        raise
                    rejected[key] = str(exc)
        if rejected:
            raise RecordsRejected(rejected)
        return len(clean)

    def _create_key(self, mapping: EntityMapping, row: dict[str, Any], run_id: str) -> str:
        return idempotency_key(run_id, self.name, mapping.table, str(row[mapping.key]), row)

    def _upsert(self, mapping: EntityMapping, endpoint: EndpointConfig, row: dict[str, Any], run_id: str) -> None:
        assert endpoint.upsert is not None
        method = endpoint.upsert.method
        path = endpoint.upsert.path.format(key=quote(str(row[mapping.key]), safe=""))
        key = self._create_key(mapping, row, run_id) if method == "POST" else None
        self._request(method, path, body=row, key=key)

    def _current(
        self, mapping: EntityMapping, endpoint: EndpointConfig, batch: list[dict[str, Any]]
    ) -> dict[str, list[dict[str, Any]]]:
        """The API's records of the batch by key; each must carry the id its update URL needs."""
        current: dict[str, list[dict[str, Any]]] = {}
        for item in self._lookup(mapping, [str(r[mapping.key]) for r in batch], need=endpoint.id_field):
            current.setdefault(str(item.get(mapping.key)), []).append(item)
        return current

    def _create_or_update(
        self,
        mapping: EntityMapping,
        endpoint: EndpointConfig,
        row: dict[str, Any],
        matches: list[dict[str, Any]],
        run_id: str,
    ) -> None:
        key = str(row[mapping.key])
        if len(matches) > 1:
            raise BadResponse(
                f"{self._where('GET', endpoint.path)}: key '{key}' matches {len(matches)} records; not written"
            )
        if not matches:
            self._request("POST", endpoint.path, body=row, key=self._create_key(mapping, row, run_id))
            return
        record = matches[0]
        changes = {c: v for c, v in row.items() if c != mapping.key and not _same(record.get(c), v)}
        if changes:
            path = f"{endpoint.path}/{quote(str(record[endpoint.id_field]), safe='')}"
            body = changes if endpoint.update_method == "PATCH" else {**_writable(record, endpoint), **changes}
            self._request(endpoint.update_method, path, body=body, key=idempotency_key(self.name, path, record, body))


def _writable(record: dict[str, Any], endpoint: EndpointConfig) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != endpoint.id_field and k not in endpoint.read_only}


def _same(current: Any, wanted: Any) -> bool:
    if current is None or wanted is None:
        return current is None and wanted is None
    return str(current) == str(wanted)


def _in_window(value: Any, start: datetime, end: datetime) -> bool:
    """Inside ``[start, end)``; an item without a readable change time is kept, to be flagged."""
    ts = parse_utc_naive(value)
    return ts is None or start <= ts < end


def _first_sight(item: dict[str, Any], mapping: EntityMapping, seen: dict[str, datetime | None]) -> bool:
    """False for a repeat of an item already taken with the same or a newer change time."""
    key = item.get(mapping.key)
    if key is None:
        return True
    ts = parse_utc_naive(item.get(mapping.cursor))
    text = str(key)
    if text in seen:
        before = seen[text]
        if ts is None or (before is not None and ts <= before):
            return False
    seen[text] = ts
    return True
