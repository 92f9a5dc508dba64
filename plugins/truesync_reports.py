"""From the Airflow UI to a run's HTML report in one click, served by the Airflow API server.

- ``Run report``: an extra link on the ``finalize`` task of every truesync DAG. It is a global
  link computed from the task's DAG id and run id alone, so it needs no XCom and no worker.
- ``/truesync/reports/``: the state directory's ``reports/`` folder served read-only by the
  API server (pages, JSON reports, Data Docs below it), because a ``file://`` link does not
  open from an ``http`` page.

Every request checks the caller's Airflow token and right to read the runs of the DAG the file
belongs to (``truesync_access``). Paths that leave the reports folder are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, RedirectResponse
from truesync_access import User, base_path, require

from truesync.pipeline.dags import DAG_PREFIX, run_key
from truesync.reporting.html import html_path
from truesync.store import Store, review
from truesync.support.paths import state_dir

PREFIX = "/truesync/reports"
LINKED_TASK = "finalize"
# Pages run in a sandbox (an origin of their own): a script in a Data Docs page cannot call the
# Airflow API with the user's session although it is served from the same host.
SERVED_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox allow-scripts allow-popups",
}


class RunReportLink(BaseOperatorLink):
    """The run's report page, on the ``finalize`` task of truesync DAGs; no link anywhere else."""

    name = "Run report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if not operator.dag_id.startswith(DAG_PREFIX) or operator.task_id != LINKED_TASK:
            return ""
        return f"{base_path()}{PREFIX}/-/dag-run/{quote(operator.dag_id, safe='')}/{quote(ti_key.run_id, safe='')}"


def _reports_dir() -> Path:
    return (state_dir() / "reports").resolve()


def _inside_reports(path: str) -> tuple[Path, str | None]:
    """The file a URL path names inside the reports folder, and the DAG it belongs to (its flow folder).

    Anything resolving outside the folder (``..``, absolute paths, symbolic links) is not found.
    """
    root = _reports_dir()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such report")
    parts = target.relative_to(root).parts
    return target, (DAG_PREFIX + parts[0] if len(parts) > 1 else None)


app = FastAPI(title="truesync reports", docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/-/dag-run/{dag_id}/{run_id:path}")
def dag_run_report(dag_id: str, run_id: str, request: Request, user: User) -> RedirectResponse:
    """Redirect to the page of the newest truesync run of a DAG run (a cleared DAG run is run again)."""
    require(user, dag_id)
    flow, key = run_key(dag_id, run_id)
    found = review.latest_attempt(Store(), flow, key) if dag_id.startswith(DAG_PREFIX) else None
    page = html_path(flow, found["run_id"]) if found else None
    if page is None or not page.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report of {dag_id} run {run_id} yet: has it finished?")
    root = request.scope.get("root_path", "").rstrip("/")
    return RedirectResponse(f"{root}/{quote(flow)}/{quote(page.name)}", status.HTTP_303_SEE_OTHER)


@app.get("/")
def index(user: User) -> FileResponse:
    """The index of all runs; it names every flow's runs, so it needs the right to read them all."""
    return report_file("index.html", user)


@app.get("/{path:path}")
def report_file(path: str, user: User) -> FileResponse:
    """A file below the reports folder, for a user who may read the runs of the flow it belongs to."""
    target, dag_id = _inside_reports(path)
    require(user, dag_id)
    if not target.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such report")
    return FileResponse(target, headers=SERVED_HEADERS)


class TruesyncReportsPlugin(AirflowPlugin):
    name = "truesync_reports"
    global_operator_extra_links = [RunReportLink()]
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "truesync reports"}]
