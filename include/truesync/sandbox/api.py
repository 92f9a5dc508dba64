"""Sandbox HTTP APIs: a CRM and a payment gateway on a real server, with switchable faults.

Each service is a FastAPI app over in-memory collections, served by uvicorn on localhost.
Listings filter by change time (``updated_since`` inclusive, ``updated_before`` exclusive,
ISO-8601, naive meaning UTC) or by key, order by (change time, key), and page by ``page``,
``offset``, an opaque ``cursor`` token or the ``Link`` header, all at once, so each client
style can be tried; ``key_after`` keeps the items whose key sorts after the value, always
in key order within a change time, so a client can page through ties by key. Every
listing body carries ``total``, the number of items it selects.
Writes stamp the change time and honour an ``Idempotency-Key`` by replaying the first answer.
There is deliberately no unique constraint on the external key: as in many real APIs, only
the idempotency key keeps a retried create from making a second record.

Faults are switched on with ``POST /_faults`` (see :class:`Faults`); ``/_stats`` counts
what the service saw and ``/_items/<collection>`` shows the raw records. Admin paths
(``/_…``) need no token and never fail.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from truesync.core.canonical import parse_utc_naive
from truesync.sandbox import DEFAULT_TOKEN

MAX_LIMIT = 1000


class Faults(BaseModel):
    """Fault switches. Counters apply to the next N non-admin requests (writes for ``lose_response``)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt switch must not silently do nothing

    skip: int = 0  # let this many requests through before the counted faults below start
    rate_limit: int = 0  # answer 429 with Retry-After
    unavailable: int = 0  # answer 503 with Retry-After
    retry_after: int = 1
    server_error: int = 0  # answer 500
    slow: int = 0  # answer only after ``delay`` seconds (beyond a client's read timeout)
    delay: float = 2.0
    lose_response: int = 0  # apply the write, then answer only after ``delay`` (the answer is lost)
    not_json: int = 0  # answer 200 with an HTML page
    bad_status: int = 0  # answer 418
    tie_split: bool = False  # order ties on change time differently on alternate pages
    repeat_item: bool = False  # start every page after the first with the previous page's last item
    touch: int = 0  # after answering a listing page, update its first item (a change made while a client reads)
    max_page: int = MAX_LIMIT  # serve at most this many items a page, whatever the client asks
    empty_page: int = 0  # answer a listing with no items but a next token/link to the same place
    reject: list[str] = []  # keys whose writes the API's validation refuses with 422


@dataclass(frozen=True)
class Collection:
    """A record collection: its external key member, change-time member, and whether it takes writes."""

    key: str
    cursor: str
    writable: bool = True
    filters: tuple[str, ...] = ()  # other members records are looked up by (?member=value), windows aside
    narrows: tuple[str, ...] = ()  # members any listing can be narrowed by (?member=value), windows kept


@dataclass
class _State:
    collections: dict[str, Collection]
    token: str | None
    items: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    stats: Counter = field(default_factory=Counter)
    starts: list[float] = field(default_factory=list)  # when each record request arrived (epoch seconds)
    replies: dict[str, tuple[int, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_id: int = 1
    after_write: Callable[[_State, str, dict[str, Any], dict[str, Any] | None], None] | None = None

    def written(self, collection: str, record: dict[str, Any], before: dict[str, Any] | None = None) -> None:
        """Run ``after_write`` on a record just created (``before`` None) or updated from ``before``."""
        if self.after_write is not None:
            self.after_write(self, collection, record, before)

    def take(self, name: str) -> bool:
        """Use up one unit of a counted fault."""
        with self.lock:
            left = getattr(self.faults, name)
            if left <= 0:
                return False
            setattr(self.faults, name, left - 1)
            self.stats[f"fault.{name}"] += 1
            return True

    def add(self, collection: str, item: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            record = {**item, "id": self.next_id}
            self.items[collection][self.next_id] = record
            self.next_id += 1
            return record


def _busiest_second(starts: list[float]) -> int:
    """The most of the (sorted) ``starts`` that fall within one second of each other."""
    busiest, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] >= 1.0:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


def now_text() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def create_app(
    name: str,
    collections: dict[str, Collection],
    token: str | None = DEFAULT_TOKEN,
    after_write: Callable[[_State, str, dict[str, Any], dict[str, Any] | None], None] | None = None,
) -> FastAPI:
    """One sandbox service; ``app.state.sandbox`` holds its records, faults and counters.

    ``after_write`` runs after every create or update (the CRM keeps deal balances with it).
    """
    state = _State(collections, token, {c: {} for c in collections}, after_write=after_write)
    app = FastAPI(title=f"truesync sandbox {name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = state

    @app.middleware("http")
    async def faults(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith("/_"):
            return await call_next(request)
        state.stats[f"{request.method} {request.url.path}"] += 1
        state.starts.append(time.time())
        if state.token and request.headers.get("Authorization") != f"Bearer {state.token}":
            return JSONResponse({"detail": "not authenticated"}, status_code=401)
        if state.take("skip"):
            return await call_next(request)
        if state.take("rate_limit"):
            headers = {"Retry-After": str(state.faults.retry_after)}
            return JSONResponse({"detail": "slow down"}, status_code=429, headers=headers)
        if state.take("unavailable"):
            headers = {"Retry-After": str(state.faults.retry_after)}
            return JSONResponse({"detail": "down for maintenance"}, status_code=503, headers=headers)
        if state.take("server_error"):
            return JSONResponse({"detail": "internal error"}, status_code=500)
        if state.take("bad_status"):
            return JSONResponse({"detail": "I'm a teapot"}, status_code=418)
        if state.take("not_json"):
            return PlainTextResponse("<html><body>maintenance</body></html>", media_type="text/html")
        if state.take("slow"):
            await asyncio.sleep(state.faults.delay)
        response = await call_next(request)
        if request.method in ("POST", "PATCH", "PUT") and state.take("lose_response"):
            await asyncio.sleep(state.faults.delay)
        return response

    _admin_routes(app, state)
    _record_routes(app, state)
    return app


def _admin_routes(app: FastAPI, state: _State) -> None:
    @app.post("/_faults")
    def set_faults(changes: dict[str, Any]) -> Response:
        with state.lock:
            try:
                state.faults = Faults(**{**state.faults.model_dump(), **changes})
            except ValidationError as exc:
                return JSONResponse({"detail": exc.errors(include_url=False, include_context=False)}, status_code=422)
            return JSONResponse(state.faults.model_dump())

    @app.get("/_stats")
    def stats() -> dict[str, int]:
        """Requests per method and path, faults used, and ``busiest_second``: most requests in any one second."""
        return {**state.stats, "busiest_second": _busiest_second(sorted(state.starts))}

    @app.post("/_seed/{collection}")
    def seed(collection: str, items: list[dict[str, Any]]) -> dict[str, int]:
        for item in items:
            state.written(collection, state.add(collection, item))
        return {"added": len(items)}

    @app.get("/_items/{collection}")
    def raw(collection: str) -> list[dict[str, Any]]:
        return list(state.items[collection].values())

    @app.delete("/_items/{collection}/{record_id}")
    def delete(collection: str, record_id: int) -> dict[str, int]:
        with state.lock:
            state.items[collection].pop(record_id, None)
        return {"deleted": record_id}


def _known(state: _State, collection: str, write: bool = False) -> Collection | JSONResponse:
    spec = state.collections.get(collection)
    if spec is None:
        return JSONResponse({"detail": f"no collection '{collection}'"}, status_code=404)
    if write and not spec.writable:
        return JSONResponse({"detail": f"'{collection}' is read-only"}, status_code=405)
    return spec


def _record_routes(app: FastAPI, state: _State) -> None:
    @app.get("/{collection}")
    async def listing(collection: str, request: Request) -> Response:
        spec = _known(state, collection)
        if isinstance(spec, JSONResponse):
            return spec
        return _page(state, collection, spec, request)

    @app.post("/{collection}", status_code=201)
    async def create(collection: str, request: Request) -> Response:
        spec = _known(state, collection, write=True)
        if isinstance(spec, JSONResponse):
            return spec
        return await _idempotent(state, request, lambda body: _create(state, collection, spec, body, 201))

    @app.api_route("/{collection}/{record_id}", methods=["PATCH", "PUT"])
    async def update(collection: str, record_id: int, request: Request) -> Response:
        spec = _known(state, collection, write=True)
        if isinstance(spec, JSONResponse):
            return spec
        replace = request.method == "PUT"
        return await _idempotent(
            state, request, lambda body: _update(state, collection, spec, record_id, body, replace)
        )

    @app.put("/{collection}/by-key/{key}")
    async def upsert(collection: str, key: str, request: Request) -> Response:
        spec = _known(state, collection, write=True)
        if isinstance(spec, JSONResponse):
            return spec

        def apply(body: dict[str, Any]) -> JSONResponse:
            found = [i for i in state.items[collection].values() if str(i.get(spec.key)) == key]
            if found:
                return _update(state, collection, spec, found[0]["id"], body, replace=False)
            return _create(state, collection, spec, {**body, spec.key: key}, 201)

        return await _idempotent(state, request, apply)


async def _idempotent(state: _State, request: Request, apply: Any) -> Response:
    """Apply a write once per Idempotency-Key; a repeat gets the first answer again."""
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"detail": "body is not JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"detail": "body must be an object"}, status_code=422)
    key = request.headers.get("Idempotency-Key")
    if key and key in state.replies:
        state.stats["idempotent_replays"] += 1
        status, content = state.replies[key]
        return JSONResponse(content, status_code=status)
    response = apply(body)
    if key and response.status_code < 500:
        state.replies[key] = (response.status_code, _content(response))
    return response


def _content(response: JSONResponse) -> Any:
    return json.loads(bytes(response.body))


def _refused(state: _State, key: Any) -> JSONResponse | None:
    if str(key) in state.faults.reject:
        state.stats["rejected"] += 1
        return JSONResponse({"detail": f"record '{key}' failed validation"}, status_code=422)
    return None


def _create(state: _State, collection: str, spec: Collection, body: dict[str, Any], status: int) -> JSONResponse:
    if body.get(spec.key) in (None, ""):
        return JSONResponse({"detail": f"'{spec.key}' is required"}, status_code=422)
    if (refused := _refused(state, body.get(spec.key))) is not None:
        return refused
    record = state.add(collection, {k: v for k, v in body.items() if k != "id"} | {spec.cursor: now_text()})
    state.stats[f"created.{collection}"] += 1
    state.written(collection, record)
    return JSONResponse(record, status_code=status)


def _update(
    state: _State, collection: str, spec: Collection, record_id: int, body: dict[str, Any], replace: bool
) -> JSONResponse:
    with state.lock:
        record = state.items[collection].get(record_id)
        if record is None:
            return JSONResponse({"detail": f"no record {record_id}"}, status_code=404)
        if (refused := _refused(state, record.get(spec.key))) is not None:
            return refused
        kept = {"id": record_id, spec.key: record.get(spec.key)} if replace else record
        updated = {**kept, **{k: v for k, v in body.items() if k != "id"}, spec.cursor: now_text()}
        state.items[collection][record_id] = updated
    state.stats[f"updated.{collection}"] += 1
    state.written(collection, updated, record)
    return JSONResponse(updated)


def _selected(state: _State, collection: str, spec: Collection, request: Request) -> list[dict[str, Any]]:
    query = request.query_params
    items = _matching(list(state.items[collection].values()), spec.narrows, query)
    if query.get("incomplete") == "true":
        return [i for i in items if i.get(spec.key) is None or parse_utc_naive(i.get(spec.cursor)) is None]
    lookups = (spec.key, *spec.filters)
    if any(query.getlist(member) for member in lookups):
        return _matching(items, lookups, query)
    after = query.get("key_after")
    if after is not None:
        items = [i for i in items if i.get(spec.key) is not None and str(i[spec.key]) > after]
    since, until = parse_utc_naive(query.get("updated_since")), parse_utc_naive(query.get("updated_before"))
    if since is None and until is None:
        return items
    timed = [(ts, i) for i in items if (ts := parse_utc_naive(i.get(spec.cursor))) is not None]
    return [i for ts, i in timed if (since is None or ts >= since) and (until is None or ts < until)]


def _matching(items: list[dict[str, Any]], members: tuple[str, ...], query: Any) -> list[dict[str, Any]]:
    """The items whose members hold one of the values the query gives for them (``?member=v1&member=v2``)."""
    for member in members:
        wanted = set(query.getlist(member))
        if wanted:
            items = [i for i in items if str(i.get(member)) in wanted]
    return items


def _order(items: list[dict[str, Any]], spec: Collection, descending_ties: bool) -> list[dict[str, Any]]:
    def tie_key(item: dict[str, Any]) -> str:
        return str(item.get(spec.key) or "")

    ordered = sorted(items, key=tie_key, reverse=descending_ties)
    return sorted(ordered, key=lambda i: parse_utc_naive(i.get(spec.cursor)) or datetime.min)


def _page(state: _State, collection: str, spec: Collection, request: Request) -> Response:
    query = request.query_params
    limit = min(int(query.get("limit", 100)), state.faults.max_page)
    if "cursor" in query:
        start = int(base64.urlsafe_b64decode(query["cursor"]).decode().split(":")[1])
    elif "page" in query:
        start = (int(query["page"]) - 1) * limit
    else:
        start = int(query.get("offset", 0))
    page_number = start // limit if limit else 0
    descending_ties = state.faults.tie_split and page_number % 2 == 1 and "key_after" not in query
    items = _order(_selected(state, collection, spec, request), spec, descending_ties)
    if state.take("empty_page"):
        return _answer(request, [], start, len(items), empty=True)
    begin = start - 1 if state.faults.repeat_item and start > 0 else start
    page = items[begin : begin + limit]
    following = begin + limit if begin + limit < len(items) else None
    response = _answer(request, page, following, len(items))
    if page and state.take("touch"):
        _update(state, collection, spec, page[0]["id"], {}, replace=False)
    return response


def _answer(
    request: Request, page: list[dict[str, Any]], following: int | None, total: int, empty: bool = False
) -> Response:
    """A listing page with its next token and ``Link``; ``empty`` marks a token the client has not seen yet."""
    body = {"items": page, "next_cursor": _token(following, empty), "total": total}
    headers = {}
    if following is not None:
        params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("page", "offset", "cursor")]
        link = f"{request.url.replace(query=urlencode([*params, ('offset', following)]))}"
        headers["Link"] = f'<{link}>; rel="next"'
    return JSONResponse(body, headers=headers)


def _token(offset: int | None, empty: bool = False) -> str | None:
    text = f"o:{offset}" + (":e" if empty else "")
    return None if offset is None else base64.urlsafe_b64encode(text.encode()).decode()


CRM_COLLECTIONS = {
    "contacts": Collection(key="external_id", cursor="modified_at"),
    "deals": Collection(key="order_ref", cursor="modified_at", filters=("invoice_ref",)),
    "payments": Collection(key="payment_ref", cursor="modified_at", filters=("deal_ref",), narrows=("kind",)),
}
PAYMENT_COLLECTIONS = {"transactions": Collection(key="txn_id", cursor="updated_at", writable=False)}
CENT = Decimal("0.01")


def _effect(payment: dict[str, Any] | None) -> Decimal:
    """What a payment record does to its deal's balance: a captured payment lowers it, a paid-out refund raises it."""
    if payment is None:
        return Decimal(0)
    sign = {("payment", "captured"): -1, ("refund", "refunded"): 1}.get((payment.get("kind"), payment.get("state")), 0)
    return sign * Decimal(str(payment.get("amount") or 0))


def deal_balance(state: _State, collection: str, record: dict[str, Any], before: dict[str, Any] | None) -> None:
    """The CRM's own bookkeeping of a deal's balance: its amount less captured payments plus paid-out refunds.

    A new deal starts from its amount and the payments already on it; after that the balance
    moves by what each payment write changes and by a change of the amount. A balance written
    to the deal itself is kept (a correction), and later payments move it from there.
    """
    with state.lock:
        if collection == "payments":
            change = _effect(record) - _effect(before)
            for deal in state.items["deals"].values():
                if change and deal.get("order_ref") == record.get("deal_ref"):
                    deal["balance"] = str((Decimal(str(deal.get("balance") or 0)) + change).quantize(CENT))
        elif collection == "deals" and before is None:
            paid = [p for p in state.items["payments"].values() if p.get("deal_ref") == record.get("order_ref")]
            balance = Decimal(str(record.get("amount") or 0)) + sum(map(_effect, paid), Decimal(0))
            record["balance"] = str(balance.quantize(CENT))
        elif collection == "deals" and record.get("balance") in (None, before.get("balance")):  # not written
            moved = Decimal(str(record.get("amount") or 0)) - Decimal(str(before.get("amount") or 0))
            record["balance"] = str((Decimal(str(before.get("balance") or 0)) + moved).quantize(CENT))


def crm_app(token: str | None = DEFAULT_TOKEN) -> FastAPI:
    return create_app("CRM", CRM_COLLECTIONS, token, after_write=deal_balance)


def payments_app(token: str | None = DEFAULT_TOKEN) -> FastAPI:
    return create_app("payment gateway", PAYMENT_COLLECTIONS, token)


def seed(app: FastAPI, data: dict[str, list[dict[str, Any]]]) -> None:
    """Load records straight into a service (no HTTP, no faults)."""
    state: _State = app.state.sandbox
    for collection, items in data.items():
        for item in items:
            state.written(collection, state.add(collection, item))


class ServerThread:
    """A uvicorn server for one app on localhost in a background thread; port 0 picks a free port."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host

    def start(self, timeout: float = 10.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("sandbox API server did not start")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
