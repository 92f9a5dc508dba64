"""The truesync dashboard inside the Airflow UI: **truesync** in the navigation (``external_views``).

Served by the API server under ``/truesync/dashboard/`` as pages rendered on the server, with
inline CSS and SVG and no script or file from anywhere else, so it works offline:

- ``/``: the status board, one row per flow × entity, worst first (``truesync.reporting.board``);
  ``/board.json`` the same for scripts.
- ``/queue``: the exception queue, filtered and paged; ``/queue.csv`` and ``/queue.json`` export
  the filtered list; ``POST /queue/decide`` retries, resolves or ignores the selected exceptions,
  or every one matching the filter, with a reason, recorded with the user's name.
- ``/record/<flow>/<entity>/<key>``: the path of one record (``truesync.reporting.trace``).
- ``POST /sync/<flow>``: *Sync now*, a run of the flow's DAG triggered through Airflow's own API
  with the user's own credential (a dry run on request).

Every route checks the caller (``truesync_access``): reading needs the right to read the flow's
DAG runs, and a user sees no row, exception or record of a flow they may not read; actions and
*Sync now* need the right to edit the flow's DAG, and a same-origin POST with the form's token.
Personal data is masked as in the reports unless the flow turns masking off.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import requests
from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from truesync_access import (
    CSRF_FIELD,
    EDIT,
    READ,
    User,
    base_path,
    check_csrf,
    credential,
    csrf_token,
    may,
    require,
    said,
    said_here,
)

from truesync.config import Config, load_config
from truesync.pipeline.dags import dag_id
from truesync.reporting.board import board
from truesync.reporting.html import CLASS_COLOURS, render_page
from truesync.reporting.masking import mask_exception, personal_names, record_names
from truesync.reporting.trace import trace
from truesync.store import Store, queue, triage

PREFIX = "/truesync/dashboard"
PAGE_SIZE = 50
EXPORT_COLUMNS = ("id", "flow", "entity", "key", "class", "check_name", "field", "reason", "status", "attempts",
                  "first_seen", "last_seen", "note", "decided_by", "decided_at", "run_id", "payload")  # fmt: skip
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'",
}
TRIGGER_TIMEOUT = 30
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_AGE_DAYS, MAX_ID = 36_500, 2**31 - 1

app = FastAPI(title="truesync dashboard", docs_url=None, redoc_url=None, openapi_url=None)


def _visible(config: Config, user: Any) -> tuple[str, ...]:
    """The flows whose DAG runs the user may read."""
    return tuple(flow for flow in config.flows if may(user, dag_id(flow)))


def _editable(user: Any, flows: Iterable[str]) -> tuple[str, ...]:
    """Those of ``flows`` whose DAG the user may edit: act on their exceptions, trigger their runs."""
    return tuple(flow for flow in flows if may(user, dag_id(flow), EDIT))


def _page(template: str, request: Request, user: Any, **context: Any) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    html = render_page(
        template,
        root=root,
        reports=root.removesuffix("/dashboard") + "/reports",
        ui=conf.get("api", "base_url", fallback="").rstrip("/"),
        user=user.get_name(),
        csrf=csrf_token(request),
        csrf_field=CSRF_FIELD,
        done=said_here(request),
        colours=CLASS_COLOURS,
        **context,
    )
    return HTMLResponse(html, headers=PAGE_HEADERS)


# --- the status board -------------------------------------------------------------------------


def _board(config: Config, user: Any) -> list[dict[str, Any]]:
    """The board's rows of the flows the user may read, each with its flow's DAG."""
    rows = board(config, Store(), set(_visible(config, user)).__contains__)
    return [{**row, "dag_id": dag_id(row["flow"])} for row in rows]


@app.get("/", response_class=HTMLResponse)
def status_board(request: Request, user: User) -> HTMLResponse:
    """One row per flow × entity the user may read, worst first."""
    config = load_config()
    rows = _board(config, user)
    editable = set(_editable(user, {row["flow"] for row in rows}))
    return _page("dashboard_board.html", request, user, rows=rows, editable=editable)


@app.get("/board.json")
def status_board_json(user: User) -> Response:
    rows = _board(load_config(), user)
    return Response(json.dumps(rows, default=str), media_type="application/json", headers=PAGE_HEADERS)


# --- the exception queue ----------------------------------------------------------------------


class QueueFilter:
    """The queue's filters, from a query string or a form; ``older_than_days`` empty means any age."""

    NAMES = ("flow", "entity", "class", "check", "status", "older_than_days", "key")

    def __init__(self, values: dict[str, str]) -> None:
        self.values = {name: (values.get(name) or "").strip() for name in self.NAMES}
        age = self.values["older_than_days"]
        if age and not (age.isdecimal() and len(age) <= 5 and int(age) <= MAX_AGE_DAYS):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"older_than_days must be 0 to {MAX_AGE_DAYS}")

    def selection(self, flows: tuple[str, ...], ids: tuple[int, ...] | None = None) -> triage.Selection:
        v = self.values
        if v["flow"] and v["flow"] not in flows:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed to read this flow's exceptions")
        age = int(v["older_than_days"]) if v["older_than_days"] else None
        return triage.Selection(flows=flows, flow=v["flow"] or None, entity=v["entity"] or None,
                                klass=v["class"] or None, check=v["check"] or None, status=v["status"] or None,
                                older_than_days=age, key=v["key"] or None, ids=ids)  # fmt: skip

    def query(self, **extra: Any) -> str:
        return urlencode({**{k: v for k, v in self.values.items() if v}, **extra})


Masks = dict[tuple[str, str], tuple[dict[str, str | None], set[str]]]


def _masked(config: Config, row: dict[str, Any], masks: Masks) -> dict[str, Any]:
    """A queued record as people may see it: personal data masked unless the flow turns masking off.

    ``masks`` keeps each flow and entity's personal names and record names, looked up once a page.
    """
    pair = (row["flow"], row["entity"])
    if pair not in masks:
        masks[pair] = personal_names(config, *pair), record_names(config, *pair)
    return mask_exception(row, *masks[pair])


@app.get("/queue", response_class=HTMLResponse)
def exception_queue(request: Request, user: User, page: Annotated[int, Query(ge=1)] = 1) -> HTMLResponse:
    """A page of the exceptions of the flows the user may read, filtered."""
    config = load_config()
    flows = _visible(config, user)
    wanted = QueueFilter(dict(request.query_params))
    rows, total = triage.page(Store(), wanted.selection(flows), (page - 1) * PAGE_SIZE, PAGE_SIZE)
    masks: Masks = {}
    return _page(
        "dashboard_queue.html", request, user,
        rows=[_masked(config, r, masks) for r in rows], total=total, page=page, pages=max(1, -(-total // PAGE_SIZE)),
        filters=wanted.values, query=wanted.query, flows=flows,
        entities=sorted({e for flow in flows for e in config.flows[flow].entities}),
        statuses=queue.STATUSES, actions=triage.ACTIONS,
        editable=set(_editable(user, flows)),
    )  # fmt: skip


def _exported(config: Config, user: Any, request: Request) -> Iterator[dict[str, Any]]:
    """The rows of an export; the filters are checked now, before the response starts (403, 422)."""
    selection = QueueFilter(dict(request.query_params)).selection(_visible(config, user))
    masks: Masks = {}
    return (_masked(config, row, masks) for row in triage.every(Store(), selection))


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a leading quote."""
    return f"'{value}" if isinstance(value, str) and value[:1] in FORMULA_STARTS else value


@app.get("/queue.csv")
def export_csv(request: Request, user: User) -> StreamingResponse:
    """The filtered queue as CSV, streamed a page of the store at a time."""
    rows = _exported(load_config(), user, request)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, EXPORT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _cell(row[c]) for c in EXPORT_COLUMNS})
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    headers = {**PAGE_HEADERS, "Content-Disposition": 'attachment; filename="truesync-exceptions.csv"'}
    return StreamingResponse(lines(), media_type="text/csv", headers=headers)


@app.get("/queue.json")
def export_json(request: Request, user: User) -> StreamingResponse:
    """The filtered queue as a JSON list, streamed."""
    rows = _exported(load_config(), user, request)

    def chunks() -> Iterator[str]:
        yield "["
        for n, row in enumerate(rows):
            yield ("," if n else "") + json.dumps({c: row[c] for c in EXPORT_COLUMNS}, default=str)
        yield "]"

    headers = {**PAGE_HEADERS, "Content-Disposition": 'attachment; filename="truesync-exceptions.json"'}
    return StreamingResponse(chunks(), media_type="application/json", headers=headers)


@app.post("/queue/decide")
async def decide(request: Request, user: User) -> RedirectResponse:
    """Retry, resolve or ignore the selected exceptions (or all matching the filter), with a reason."""
    form = await request.form()
    check_csrf(request, str(form.get(CSRF_FIELD) or ""))
    config = load_config()
    wanted = QueueFilter({k: str(v) for k, v in form.items()})
    editable = _editable(user, _visible(config, user))
    if not editable:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed to act on any flow's exceptions")
    ids = None if form.get("everything") == "yes" else tuple(_ids(form.getlist("id")))
    if ids == ():
        return _back(
            request, "/queue", wanted.query(**said(request, "nothing selected: tick exceptions, or all matching"))
        )
    try:
        outcome = triage.decide(Store(), wanted.selection(editable, ids), str(form.get("action") or ""),
                                str(form.get("reason") or ""), user.get_name())  # fmt: skip
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from exc
    return _back(request, "/queue", wanted.query(**said(request, triage.describe(outcome))))


def _ids(values: list[Any]) -> Iterator[int]:
    for value in values:
        text = str(value)
        if not (text.isdecimal() and len(text) <= 10 and int(text) <= MAX_ID):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"not an exception id: {text[:40]!r}")
        yield int(text)


def _back(request: Request, path: str, query: str) -> RedirectResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    return RedirectResponse(f"{root}{path}{'?' if query else ''}{query}", status.HTTP_303_SEE_OTHER)


# --- one record, and Sync now -----------------------------------------------------------------


def _flow_for(config: Config, user: Any, flow: str, method: str = READ) -> None:
    """Refuse unless the user has the right on the flow's DAG; only then say whether the flow exists."""
    require(user, dag_id(flow), method)
    if flow not in config.flows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such flow")


@app.get("/record")
def record_lookup(request: Request, user: User, flow: str = "", entity: str = "", key: str = "") -> RedirectResponse:
    """The board's key box: on to the record's own page."""
    return _back(request, f"/record/{quote(flow, safe='')}/{quote(entity, safe='')}/{quote(key.strip(), safe='')}", "")


@app.get("/record/{flow}/{entity}/{key:path}", response_class=HTMLResponse)
def record_path(flow: str, entity: str, key: str, request: Request, user: User) -> HTMLResponse:
    """Every run that saw the record, its ledger entry, overwrites, exceptions and live values."""
    config = load_config()
    _flow_for(config, user, flow)
    if entity not in config.flows[flow].entities:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such entity in this flow")
    if not key or len(key) > 255 or any(ord(c) < 32 for c in key):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "not a record key")
    found = trace(config, Store(), flow, entity, key)
    return _page("dashboard_record.html", request, user, found=found, dag_id=dag_id(flow))


@app.post("/sync/{flow}")
def sync_now(flow: str, request: Request, user: User, csrf: Annotated[str, Form()] = "",
             dry_run: Annotated[str, Form()] = "") -> RedirectResponse:  # fmt: skip
    """Trigger a run of the flow's DAG now, through Airflow's API as the user (a dry run on request)."""
    check_csrf(request, csrf)
    config = load_config()
    _flow_for(config, user, flow, EDIT)
    try:
        answer = _trigger(request, dag_id(flow), dry_run == "yes")
    except requests.RequestException as exc:
        message = f"could not reach Airflow's API at {_api_root()} to trigger {dag_id(flow)}: {type(exc).__name__}"
    else:
        if answer.status_code >= 300:
            message = f"Airflow refused the run of {dag_id(flow)} ({answer.status_code}): {answer.text[:200]}"
        else:
            kind = "dry run" if dry_run == "yes" else "run"
            message = f"{kind} {answer.json().get('dag_run_id')} of {dag_id(flow)} queued"
    return _back(request, "/", urlencode(said(request, message)))


def _trigger(request: Request, dag: str, dry_run: bool) -> requests.Response:
    return requests.post(
        f"{_api_root()}/api/v2/dags/{quote(dag, safe='')}/dagRuns",
        json={"logical_date": None, "conf": {"dry_run": dry_run}},
        headers={"Authorization": f"Bearer {credential(request)}"},
        timeout=TRIGGER_TIMEOUT,
        verify=False,  # noqa: S501 - this API server itself, over loopback: its certificate names another host
    )


def _api_root() -> str:
    """This API server as it listens ([api] host and port), never a host a request names: the
    user's credential goes nowhere else.
    """
    host = conf.get("api", "host", fallback="0.0.0.0")  # noqa: S104 - Airflow's default, read, not bound
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    scheme = "https" if conf.get("api", "ssl_cert", fallback="") else "http"
    return f"{scheme}://{host}:{conf.getint('api', 'port', fallback=8080)}{base_path()}"


class TruesyncDashboardPlugin(AirflowPlugin):
    name = "truesync_dashboard"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "truesync dashboard"}]
    external_views = [
        {
            "name": "truesync",
            "href": f"{PREFIX}/",
            "url_route": "truesync",
            "destination": "nav",
            "category": None,
        }
    ]
