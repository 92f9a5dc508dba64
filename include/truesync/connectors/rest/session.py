"""One HTTP API on the wire: authentication, retrying sessions, a rate ceiling, one request and its errors.

Reliability is layered:

* urllib3 ``Retry`` under the session: exponential backoff with jitter, ``Retry-After``
  honoured on 429 and 503 (capped by ``backoff_max``), retries on connection errors,
  read timeouts and 429/5xx. Connect and read timeouts are always set.
* Two sessions, because urllib3 decides retryability by method alone and never sees the
  request headers: the plain one retries only idempotent methods; the keyed one also
  retries POST and PATCH and is used only for requests that carry an ``Idempotency-Key``,
  so a retried create can never make a second record.
* A per-system requests-per-second ceiling shared by every connector in the process, or,
  once the pipeline hands it the store's (``share_ceiling``), by every worker of the
  deployment. Retries inside urllib3 are spaced by the backoff, not by the ceiling.

A final 429/5xx or no answer is transient (``SystemUnavailable``); any other non-2xx is a
``BadResponse`` carrying its status. Errors name the system, the method, the endpoint path
and the status; the credentials travel only in request headers, which no message, log line
or exception ever contains, and only over https or to a loopback host.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth
from urllib3.util.retry import Retry

from truesync.connectors.base import Ceiling, Ceilings
from truesync.connectors.errors import ConfigurationProblem, SystemUnavailable
from truesync.connectors.rest.connection import HttpConnection
from truesync.connectors.rest.settings import RestConfig

RETRY_STATUSES = (429, 500, 502, 503, 504)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
KEYED = IDEMPOTENT | {"POST", "PATCH"}
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class BadResponse(ConfigurationProblem):
    """The API answered, but not as configured: unexpected status, not JSON, no item list."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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
    if kind == "basic" and not (conn.login or conn.password):
        raise ConfigurationProblem("auth type 'basic' needs a login or a password in the connection")
    if kind != "basic" and not conn.password:
        raise ConfigurationProblem(f"auth type '{kind}' needs a password (the secret) in the connection")
    url = urlsplit(conn.base_url)
    if url.scheme != "https" and url.hostname not in LOOPBACK:
        raise ConfigurationProblem(
            f"auth type '{kind}' over plain {url.scheme}://{url.hostname}: credentials go only over https "
            "(or to a loopback host)"
        )
    if kind == "basic":
        return HTTPBasicAuth(conn.login or "", conn.password or "")  # Stripe: the secret key is the login
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


class Api:
    """One system's API: its settings, base URL, the two sessions and its share of the rate ceiling."""

    def __init__(self, name: str, config: RestConfig, conn: HttpConnection) -> None:
        self.name = name
        self.config = config
        self.base_url = conn.base_url
        self._plain = _session(config, conn, IDEMPOTENT)
        self._keyed = _session(config, conn, KEYED)
        self._limiter: Ceiling | None = limiter(name, config.rate_limit) if config.rate_limit else None

    def share_ceiling(self, ceilings: Ceilings) -> None:
        """Start requests by the ceiling every worker shares (``ceilings``) instead of this process's own."""
        if self.config.rate_limit:
            self._limiter = ceilings(self.name, self.config.rate_limit)

    def describe(self) -> str:
        return f"system '{self.name}' ({self.base_url})"

    def where(self, method: str, path: str) -> str:
        """How a message names one call: system, method and endpoint path."""
        return f"system '{self.name}' {method} {path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        url: str | None = None,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> requests.Response:
        """One call with retries; ``key`` is its ``Idempotency-Key``, which lets POST and PATCH be retried."""
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
                f"{self.where(method, path)}: no answer after {self.config.retries} retries ({type(exc).__name__})"
            ) from None
        if response.status_code in RETRY_STATUSES:
            raise SystemUnavailable(
                f"{self.where(method, path)}: status {response.status_code} after {self.config.retries} retries"
            )
        if not 200 <= response.status_code < 300:
            raise BadResponse(
                f"{self.where(method, path)}: unexpected status {response.status_code}", response.status_code
            )
        return response

    def json(self, response: requests.Response, method: str, path: str) -> Any:
        """The body of an answer, which must be JSON."""
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            raise BadResponse(
                f"{self.where(method, path)}: status {response.status_code}, response is not JSON ({kind})"
            ) from None
