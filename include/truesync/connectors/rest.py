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
from truesync.connections import HttpConnection
from truesync.connectors.base import ConfigurationProblem, SystemUnavailable
from truesync.restconfig import EndpointConfig, RestConfig

RETRY_STATUSES = (429, 500, 502, 503, 504)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
KEYED = IDEMPOTENT | {"POST", "PATCH"}
TIE = timedelta(microseconds=1)


class BadResponse(ConfigurationProblem):
    """The API answered, but not as configured: unexpected status, not JSON, no item list."""


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
    return value.isoformat()


def _parse_ts(value: Any) -> datetime | None:
    """A change time as naive UTC, or None when absent or unreadable."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def idempotency_key(*parts: Any) -> str:
    """A deterministic key for one write: every retry of it, and a rerun of it, sends the same key.

    Creates are keyed by the record and the UTC day, updates by the record as it was seen
    before the change: a record deleted and created again later, or changed back to an old
    value, is a new write with a new key, not a replay of the old answer.
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


def _create_key(system: str, endpoint: str, row: dict[str, Any]) -> str:
    return idempotency_key(system, endpoint, row, datetime.now(UTC).date())


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
            raise BadResponse(f"{self._where(method, path)}: unexpected status {response.status_code}")
        return response

    def _json(self, response: requests.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            raise BadResponse(
                f"{self._where(method, path)}: status {response.status_code}, response is not JSON ({kind})"
            ) from None

    def _items(self, endpoint: EndpointConfig, body: Any, path: str) -> list[dict[str, Any]]:
        items = body if not endpoint.items_field else (body or {}).get(endpoint.items_field)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            where = f"field '{endpoint.items_field}'" if endpoint.items_field else "the body"
            raise BadResponse(f"{self._where('GET', path)}: {where} is not a list of objects")
        return items

    # --- listings --------------------------------------------------------------------------

    def _endpoint(self, mapping: EntityMapping) -> EndpointConfig:
        return self.config.endpoints[mapping.table]

    def _pages(self, endpoint: EndpointConfig, params: dict[str, Any]) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """Pages of a listing in the endpoint's pagination style, with whether another follows."""
        paging = endpoint.pagination
        size = paging.page_size
        query: dict[str, Any] = {**params, paging.size_param: size}
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
            body = self._json(response, "GET", endpoint.path)
            items = self._items(endpoint, body, endpoint.path)
            if paging.style == "cursor":
                following = (body or {}).get(paging.next_field) if isinstance(body, dict) else None
                more = bool(following) and following != token
                token = following
            elif paging.style == "link":
                url = response.links.get("next", {}).get("url")
                more = url is not None
                if url is not None:
                    self._check_same_origin(url, endpoint.path)
            else:
                more = len(items) >= size
            yield items, more
            if not more or not items:
                return
            number, offset = number + 1, offset + len(items)

    def _check_same_origin(self, url: str, path: str) -> None:
        """A next link elsewhere would carry the credentials to another host: refuse it."""
        base, link = urlsplit(self.base_url), urlsplit(url)
        if (base.scheme, base.netloc) != (link.scheme, link.netloc):
            raise BadResponse(f"{self._where('GET', path)}: next link points to another host")

    def _listing(self, endpoint: EndpointConfig, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for items, _ in self._pages(endpoint, params):
            yield from items

    def _tie_group(
        self, endpoint: EndpointConfig, mapping: EntityMapping, last: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Every item sharing the change time of a page's last item, asked for on its own.

        A page boundary can split items with equal change times, and an API that orders ties
        differently from one request to the next then skips some of them; reading the whole
        tie group closes that gap, and the repeats it brings are dropped by key.
        """
        ts = _parse_ts(last.get(mapping.cursor))
        if ts is None or endpoint.until_param is None:
            return []
        params = {**endpoint.params, endpoint.since_param: _iso(ts), endpoint.until_param: _iso(ts + TIE)}
        return list(self._listing(endpoint, params))

    def extract(self, mapping: EntityMapping, start: datetime, end: datetime, size: int) -> Iterator[pd.DataFrame]:
        """Items changed in ``[start, end)``, page by page; repeats across pages are dropped by key."""
        endpoint = self._endpoint(mapping)
        params = {**endpoint.params, endpoint.since_param: _iso(start)}
        if endpoint.until_param:
            params[endpoint.until_param] = _iso(end)
        seen: dict[str, datetime | None] = {}
        chunk: list[dict[str, Any]] = []
        for items, more in self._pages(endpoint, params):
            if more and items:
                items = items + self._tie_group(endpoint, mapping, items[-1])
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
            if item.get(mapping.key) is None or _parse_ts(item.get(mapping.cursor)) is None:
                chunk.append(item)
            if len(chunk) >= size:
                yield self._frame(chunk, mapping)
                chunk = []
        if chunk:
            yield self._frame(chunk, mapping)

    def _columns(self, mapping: EntityMapping) -> list[str]:
        return list(
            dict.fromkeys([mapping.key, *mapping.fields.values(), *([mapping.cursor] if mapping.cursor else [])])
        )

    def _frame(
        self, items: list[dict[str, Any]], mapping: EntityMapping, extra: list[str] | None = None
    ) -> pd.DataFrame:
        columns = list(dict.fromkeys(self._columns(mapping) + (extra or [])))
        return pd.DataFrame([[item.get(c) for c in columns] for item in items], columns=columns, dtype=object)

    def table(self, mapping: EntityMapping) -> Table:
        """The endpoint's members as text columns; the first call checks the endpoint answers."""
        if mapping.table not in self._tables:
            endpoint = self._endpoint(mapping)
            self._json(
                self._request("GET", endpoint.path, params={endpoint.pagination.size_param: 1}), "GET", endpoint.path
            )
            columns = [Column(c, String) for c in self._columns(mapping)]
            self._tables[mapping.table] = Table(mapping.table, MetaData(), *columns)
        return self._tables[mapping.table]

    # --- lookups and writes ----------------------------------------------------------------

    def _lookup(self, mapping: EntityMapping, keys: list[str], column: str | None = None) -> list[dict[str, Any]]:
        """Items whose key (or ``column``) holds one of the values, ``max_keys`` values a request."""
        endpoint = self._endpoint(mapping)
        lookup = endpoint.lookup
        if lookup is None or (column is not None and column not in lookup.by):
            by = f" by '{column}'" if column else ""
            raise ConfigurationProblem(f"{self.describe()}: endpoint '{mapping.table}' has no lookup{by} configured")
        param = lookup.param if column is None else lookup.by[column]
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), lookup.max_keys):
            found += self._listing(endpoint, {param: keys[start : start + lookup.max_keys]})
        return found

    def fetch(self, mapping: EntityMapping, keys: list[str]) -> pd.DataFrame:
        """Current items for ``keys``, found by the endpoint's lookup parameter."""
        return self._frame(self._lookup(mapping, keys), mapping)

    def fetch_by(self, mapping: EntityMapping, column: str, values: list[str]) -> pd.DataFrame:
        """Current items whose ``column`` holds one of ``values`` (``lookup.by`` names the parameter)."""
        return self._frame(self._lookup(mapping, values, column), mapping, [column])

    def write(self, mapping: EntityMapping, rows: list[dict[str, Any]], batch_size: int) -> int:
        """Create-or-update each row by its external key; returns how many rows were sent.

        With a native upsert call, one call per row. Otherwise the records are looked up by
        key (``batch_size`` at a time): a new one is created with POST, an existing one gets
        PATCH (or PUT) of only the fields that differ. Creates and updates carry an
        idempotency key derived from the record, so a retry whose first answer was lost
        does not apply twice. A failure stops the batch; what was sent before stays.
        """
        endpoint = self._endpoint(mapping)
        dropped = set(endpoint.read_only) | ({mapping.cursor} - set(mapping.fields.values()))
        clean = [{c: v for c, v in row.items() if c not in dropped} for row in rows]
        for start in range(0, len(clean), batch_size):
            batch = clean[start : start + batch_size]
            if endpoint.upsert is not None:
                for row in batch:
                    self._upsert(mapping, endpoint, row)
            else:
                self._create_or_update(mapping, endpoint, batch)
        return len(clean)

    def _upsert(self, mapping: EntityMapping, endpoint: EndpointConfig, row: dict[str, Any]) -> None:
        assert endpoint.upsert is not None
        method = endpoint.upsert.method
        path = endpoint.upsert.path.format(key=quote(str(row[mapping.key]), safe=""))
        key = _create_key(self.name, mapping.table, row) if method == "POST" else None
        self._request(method, path, body=row, key=key)

    def _create_or_update(self, mapping: EntityMapping, endpoint: EndpointConfig, batch: list[dict[str, Any]]) -> None:
        current: dict[str, list[dict[str, Any]]] = {}
        for item in self._lookup(mapping, [str(r[mapping.key]) for r in batch]):
            current.setdefault(str(item.get(mapping.key)), []).append(item)
        for row in batch:
            key = str(row[mapping.key])
            matches = current.get(key, [])
            if len(matches) > 1:
                raise BadResponse(
                    f"{self._where('GET', endpoint.path)}: key '{key}' matches {len(matches)} records; not written"
                )
            if not matches:
                self._request("POST", endpoint.path, body=row, key=_create_key(self.name, mapping.table, row))
                continue
            record = matches[0]
            changes = {c: v for c, v in row.items() if c != mapping.key and not _same(record.get(c), v)}
            if changes:
                path = f"{endpoint.path}/{quote(str(record[endpoint.id_field]), safe='')}"
                body = changes if endpoint.update_method == "PATCH" else {**_writable(record, endpoint), **changes}
                self._request(
                    endpoint.update_method, path, body=body, key=idempotency_key(self.name, path, record, body)
                )


def _writable(record: dict[str, Any], endpoint: EndpointConfig) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != endpoint.id_field and k not in endpoint.read_only}


def _same(current: Any, wanted: Any) -> bool:
    if current is None or wanted is None:
        return current is None and wanted is None
    return str(current) == str(wanted)


def _in_window(value: Any, start: datetime, end: datetime) -> bool:
    """Inside ``[start, end)``; an item without a readable change time is kept, to be flagged."""
    ts = _parse_ts(value)
    return ts is None or start <= ts < end


def _first_sight(item: dict[str, Any], mapping: EntityMapping, seen: dict[str, datetime | None]) -> bool:
    """False for a repeat of an item already taken with the same or a newer change time."""
    key = item.get(mapping.key)
    if key is None:
        return True
    ts = _parse_ts(item.get(mapping.cursor))
    text = str(key)
    if text in seen:
        before = seen[text]
        if ts is None or (before is not None and ts <= before):
            return False
    seen[text] = ts
    return True
