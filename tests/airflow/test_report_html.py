"""The HTML run report seen by a browser and through Airflow: a screenshot, the plugin, one click in a real Airflow.

A headless Chromium screenshot proves the page renders; without a browser that test skips
locally and fails under ``CI=true``. What the pages say is tested in the integration tier.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from one_dag_auth import ONLY
from plugin_client import plugin_client, screenshot
from report_runs import DEMO_START, FLOW, Runs

from truesync import cli
from truesync.pipeline import dags
from truesync.pipeline.compare import run_compare
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.reporting import html as report_html
from truesync.sandbox.localairflow import LocalAirflow
from truesync.support.paths import PROJECT_ROOT


def test_headless_chromium_renders_the_run_page(shared_runs: Runs, tmp_path: Path) -> None:
    page = report_html.html_path(FLOW, shared_runs.reports[-1]["run_id"])
    width, height, pixels = screenshot(page, tmp_path / "run.png", 1280, 2000)
    assert (width, height) == (1280, 2000)
    assert len(set(pixels)) > 16, "the screenshot is blank"


# --- the Airflow plugin: extra link and authenticated report server ------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, TestClient, Callable]]:
    """The reports plugin's app in-process, with Airflow's auth manager and a token factory per role.

    It serves the reports of the state directory the environment names at each request: the
    test takes ``runs`` or ``shared_runs`` as well.
    """
    with plugin_client("truesync_reports", monkeypatch) as served:
        yield served


def test_the_extra_link_leads_an_airflow_user_to_the_run_page(runs: Runs, served: tuple) -> None:
    plugin, client, token = served
    airflow_run = "scheduled__2026-11-03T00:00:00+00:00"
    link = plugin.RunReportLink()
    finalize = SimpleNamespace(dag_id=f"truesync_{FLOW}", task_id="finalize")
    url = link.get_link(finalize, ti_key=SimpleNamespace(run_id=airflow_run))
    assert url == f"/truesync/reports/-/dag-run/truesync_{FLOW}/scheduled__2026-11-03T00%3A00%3A00%2B00%3A00"
    assert link.get_link(SimpleNamespace(dag_id=f"truesync_{FLOW}", task_id="plan"), ti_key=None) == ""
    assert link.get_link(SimpleNamespace(dag_id="other_dag", task_id="finalize"), ti_key=None) == ""

    path = url.removeprefix(plugin.PREFIX)
    assert client.get(path, follow_redirects=False).status_code == 401
    client.cookies.set("_token", token("viewer"))
    assert client.get(path, follow_redirects=False).status_code == 404, "no truesync run for that DAG run yet"
    for attempt in ("", "#1"):  # the DAG run, then the same DAG run cleared and run again
        report = run_flow(
            runs.config, runs.store, FLOW, f"{FLOW}:{airflow_run}{attempt}", Window(DEMO_START, DEMO_START)
        )
        report_html.render_run(runs.config, runs.store, report)
    found = client.get(path, follow_redirects=False)
    assert found.status_code == 303
    assert found.headers["location"] == f"/{FLOW}/{FLOW}_scheduled__2026-11-03T00_00_00_00_00_1.html"
    assert f"{FLOW}:{airflow_run}#1" in client.get(found.headers["location"]).text

    # The flow's compare DAG can have a run of the same id: its link finds the compare's page.
    compare = SimpleNamespace(dag_id=f"truesync_{FLOW}_compare", task_id="finalize")
    compare_path = link.get_link(compare, ti_key=SimpleNamespace(run_id=airflow_run)).removeprefix(plugin.PREFIX)
    assert client.get(compare_path, follow_redirects=False).status_code == 404, "not the incremental DAG's run"
    run_compare(runs.config, runs.store, FLOW, dags.store_run_id(compare.dag_id, airflow_run, 0))
    found = client.get(compare_path, follow_redirects=False)
    assert found.headers["location"] == f"/{FLOW}/{FLOW}_compare_scheduled__2026-11-03T00_00_00_00_00.html"
    assert client.get(path, follow_redirects=False).headers["location"].endswith("_1.html"), "and not the other way"


@pytest.mark.usefixtures("shared_runs")
def test_the_report_server_checks_the_airflow_token_and_stays_in_the_reports_folder(served: tuple) -> None:
    _, client, token = served
    page = f"/{FLOW}/{report_html.html_path(FLOW, f'{FLOW}:day1').name}"
    for path in ("/", page, f"/{FLOW}/{FLOW}_day1.json"):
        assert client.get(path).status_code == 401, path
    assert client.get(page, headers={"Authorization": "Bearer not-a-token"}).status_code == 403
    assert client.get(page, headers={"Authorization": f"Bearer {token(None)}"}).status_code == 403, "no role"
    ok = client.get(page, headers={"Authorization": f"Bearer {token('viewer')}"})
    assert ok.status_code == 200 and f"{FLOW}:day1" in ok.text and ok.headers["content-type"].startswith("text/html")
    assert ok.headers["content-security-policy"].startswith("sandbox")
    client.cookies.set("_token", token("viewer"))
    assert client.get("/").status_code == 200 and "truesync runs" in client.get("/").text
    for escape_attempt in (
        "/..%2Ftruesync.db",
        "/%2e%2e/truesync.db",
        f"/{FLOW}/..%2F..%2Ftruesync.db",
        "/%2Fetc%2Fpasswd",
    ):
        answer = client.get(escape_attempt)
        assert answer.status_code == 404 and b"SQLite" not in answer.content, escape_attempt
    assert client.get(f"/{FLOW}/no-such-page.html").status_code == 404


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hands back a redirect as it is, to read where it points."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None

    def http_error_303(self, req: object, fp: object, code: int, msg: str, headers: object) -> object:
        return fp


class _KeepCookie(urllib.request.BaseHandler):
    """Sends the login cookie with every request, redirects included, as a browser does."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        for name, value in self.headers.items():
            request.add_unredirected_header(name, value)
        return request


def _login(base: str, user: str) -> dict[str, str]:
    """The cookie the UI's browser holds after ``user`` logged in."""
    login = urllib.request.Request(
        f"{base}/auth/token",
        data=json.dumps({"username": user, "password": PASSWORDS[user]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(login) as answer:
        return {"Cookie": f"_token={json.load(answer)['access_token']}"}


ONE_FLOW = f"{ONLY}truesync_erp_to_stockctl"  # may read that flow's DAG, no other
PASSWORDS = {"reviewer": "a-test-password", "operator": "another-test-password", ONE_FLOW: "a-third-password"}


def test_one_click_from_the_finalize_task_in_a_real_airflow_to_the_report(state: Path) -> None:
    """A real api-server and scheduler: the task's extra link, then the page behind the UI's login cookie;
    the dashboard in the UI's navigation, and its *Sync now* through Airflow's API as the user.
    """
    assert cli.main(["sandbox", "init", "--scale", "100"]) == 0
    flow, dag_run = "erp_to_stockctl", "manual__report_link"
    dag_id = f"truesync_{flow}"
    passwords = state / "airflow-passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    tests = os.pathsep.join(filter(None, [str(PROJECT_ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    users = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"reviewer:viewer,operator:op,{ONE_FLOW}:viewer",
             "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
             "AIRFLOW__CORE__AUTH_MANAGER": "one_dag_auth.OneDagAuthManager", "PYTHONPATH": tests}  # fmt: skip
    airflow = LocalAirflow(state / "airflow", extra_env=users)
    airflow.prepare([dag_id])
    airflow.trigger(dag_id, dag_run)
    airflow.start()
    try:
        assert airflow.wait_for_run(dag_id, dag_run) == "success"
        base = f"http://127.0.0.1:{airflow.port}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/truesync/reports/")
        assert refused.value.code == 401
        cookie = _login(base, "reviewer")
        api = f"{base}/api/v2/dags/{dag_id}/dagRuns/{dag_run}/taskInstances/finalize/links"
        with urllib.request.urlopen(urllib.request.Request(api, headers=cookie)) as answer:
            link = json.load(answer)["extra_links"]["Run report"]
        assert link.startswith("/truesync/reports/-/dag-run/")
        opener = urllib.request.build_opener(_KeepCookie(cookie))
        with opener.open(base + link) as page:
            html = page.read().decode()
            assert page.url.endswith(report_html.html_path(flow, f"{flow}:{dag_run}").name)
        assert f"{flow}:{dag_run}" in html and 'data-status="success"' in html
        _dashboard_in_the_ui(airflow, base, dag_id)
    finally:
        airflow.stop()


def _dashboard_in_the_ui(airflow: LocalAirflow, base: str, dag_id: str) -> None:
    """**truesync** in the navigation; its board behind the login; *Sync now* for an operator only."""
    viewer, operator = _login(base, "reviewer"), _login(base, "operator")
    with urllib.request.urlopen(urllib.request.Request(f"{base}/api/v2/plugins", headers=viewer)) as answer:
        plugins = {p["name"]: p for p in json.load(answer)["plugins"]}
    (view,) = plugins["truesync_dashboard"]["external_views"]
    assert (view["name"], view["href"], view["url_route"]) == ("truesync", "/truesync/dashboard/", "truesync")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/truesync/dashboard/")
    assert refused.value.code == 401
    with urllib.request.urlopen(urllib.request.Request(f"{base}/truesync/dashboard/", headers=operator)) as page:
        board = page.read().decode()
    assert f'data-flow="{dag_id.removeprefix("truesync_")}"' in board
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', board).group(1)
    sync = f"{base}/truesync/dashboard/sync/{dag_id.removeprefix('truesync_')}"
    form = urllib.parse.urlencode({"csrf": csrf, "dry_run": "yes"}).encode()
    origin = {"Origin": base}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/truesync/dashboard/", headers=viewer)) as page:
        assert "Sync now" not in page.read().decode(), "a viewer is offered no action"
    with urllib.request.urlopen(urllib.request.Request(f"{base}/truesync/dashboard/queue", headers=viewer)) as page:
        own = re.search(r'name="csrf" value="([0-9a-f]+)"', page.read().decode()).group(1)
    with pytest.raises(urllib.error.HTTPError) as refused:  # the viewer's own form token: a right is missing
        viewer_form = urllib.parse.urlencode({"csrf": own}).encode()
        urllib.request.urlopen(urllib.request.Request(sync, data=viewer_form, headers={**viewer, **origin}))
    assert refused.value.code == 403 and b"act on this flow" in refused.value.read()
    before = len(airflow.dag_runs(dag_id))
    request = urllib.request.Request(sync, data=form, headers={**operator, **origin})
    answer = urllib.request.build_opener(_NoRedirect()).open(request)
    location = answer.headers["location"]
    assert answer.status == 303 and "queued" in urllib.parse.unquote_plus(location), location
    assert len(airflow.dag_runs(dag_id)) == before + 1, "the operator's Sync now made a DAG run"
    one_flow = _login(base, ONE_FLOW)
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}/truesync/dashboard/board.json", headers=one_flow)
    ) as page:
        assert {row["dag_id"] for row in json.load(page)} == {ONE_FLOW.removeprefix(ONLY)}
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            urllib.request.Request(f"{base}/truesync/dashboard/queue?flow=webshop_to_crm", headers=one_flow)
        )
    assert refused.value.code == 403
