"""The HTML run report and index over sandbox runs: parsed back, masked, offline, and seen by a browser.

The counts in the page are read from its ``data-*`` hooks and compared with the JSON run
report; a headless Chromium screenshot proves the page renders. Without a browser the
screenshot test skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import urllib.error
import urllib.request
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select

from truesync import cli
from truesync.config import Config, load_config
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.reporting import html as report_html
from truesync.sandbox import systems as sandbox
from truesync.sandbox.localairflow import LocalAirflow
from truesync.store import Store, staging
from truesync.store.runs import finish
from truesync.support.paths import PROJECT_ROOT
from truesync.support.sqldb import open_engine

FLOW = "webshop_to_crm"
DEMO_START = datetime.combine(sandbox.DEMO_START, datetime.min.time())


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class Page(HTMLParser):
    """Every element with its attributes and the text directly inside it."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in ("meta", "br", "circle", "line", "polyline", "img"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].text += data

    def cells(self, **wanted: str | None) -> list[Element]:
        """``td`` elements whose data attributes match: a value, or None for 'attribute absent'."""
        found = []
        for e in self.elements:
            if e.tag == "td" and all(
                (f"data-{k}" not in e.attrs) if v is None else e.attrs.get(f"data-{k}") == v for k, v in wanted.items()
            ):
                found.append(e)
        return found

    def number(self, **wanted: str | None) -> int:
        (cell,) = self.cells(**wanted)
        return int(cell.text.strip().replace(",", "") or 0)


@dataclass
class Runs:
    config: Config
    store: Store
    state: Path
    reports: list[dict[str, Any]] = field(default_factory=list)

    def run(self, flow: str, day: int) -> dict[str, Any]:
        start = DEMO_START + timedelta(days=day)
        window = Window(start - self.config.flows[flow].lookback, start + timedelta(days=1))
        report = run_flow(self.config, self.store, flow, f"{flow}:day{day}", window)
        report_html.render_run(self.config, self.store, report)
        self.reports.append(report)
        return report


@pytest.fixture
def runs(state: Path) -> Iterator[Runs]:
    assert cli.main(["sandbox", "init", "--scale", "200"]) == 0
    handle = Runs(load_config(), Store(), state)
    for flow, day in ((FLOW, 0), ("erp_to_stockctl", 0), (FLOW, 1)):
        handle.run(flow, day)
    report_html.render_index(handle.store)
    yield handle
    handle.store.engine.dispose()


def page_of(report: dict[str, Any]) -> tuple[str, Page]:
    html = report_html.html_path(report["flow"], report["run_id"]).read_text()
    return html, Page(html)


def test_counts_in_the_page_equal_the_run_report(runs: Runs) -> None:
    for report in runs.reports:
        _, page = page_of(report)
        assert {e.attrs["data-status"] for e in page.elements if "data-status" in e.attrs} == {report["status"]}
        for entity, body in report["entities"].items():
            assert page.number(entity=entity, count="extracted") == body["extracted"]
            assert page.number(entity=entity, count="overdue") == body["overdue"]
            for klass, n in body["classes"].items():
                assert page.number(entity=entity, **{"class": klass, "outcome": None}) == n, (entity, klass)
            for outcome, n in body["outcomes"].items():
                assert page.number(entity=entity, outcome=outcome, **{"class": None}) == n, (entity, outcome)
            crossed: dict[tuple[str, str], int] = defaultdict(int)
            for cell in page.cells(entity=entity):
                if "data-class" in cell.attrs and "data-outcome" in cell.attrs and cell.text.strip():
                    crossed["class", cell.attrs["data-class"]] += int(cell.text)
                    crossed["outcome", cell.attrs["data-outcome"]] += int(cell.text)
            assert {k: n for (kind, k), n in crossed.items() if kind == "class"} == {
                k: n for k, n in body["classes"].items() if n
            }
            assert {k: n for (kind, k), n in crossed.items() if kind == "outcome"} == {
                k: n for k, n in body["outcomes"].items() if n
            }
            bars = {e.attrs["data-class"]: int(e.attrs["data-n"]) for e in page.elements
                    if e.tag == "rect" and e.attrs.get("data-entity") == entity}  # fmt: skip
            assert bars == {k: n for k, n in body["classes"].items() if n}
        for outcome in ("created", "updated", "unchanged", "quarantined", "extracted"):
            totals = [e for e in page.elements if e.attrs.get("data-total") == outcome]
            assert totals and all(int(e.text.replace(",", "")) == report["totals"][outcome] for e in totals)


def test_overdue_records_reasons_and_trend_come_from_the_store(runs: Runs) -> None:
    report = runs.reports[-1]
    _, page = page_of(report)
    results = staging.run_results(runs.store, report["run_id"])
    overdue = {e.attrs["data-overdue-key"] for e in page.elements if "data-overdue-key" in e.attrs}
    assert overdue == set(results.loc[results["overdue"].astype(bool), "key"].head(report_html.OVERDUE_SHOWN))
    held = results[results["check_name"].notna()]
    counts = held.groupby(["check_name"]).size().to_dict()
    shown = [(e.attrs["data-reason-check"], int(e.attrs["data-reason-count"])) for e in page.elements
             if "data-reason-check" in e.attrs]  # fmt: skip
    assert [n for _, n in shown] == sorted((n for _, n in shown), reverse=True)
    assert sum(n for _, n in shown) == len(held) and {c for c, _ in shown} == set(counts)
    trend = [e.attrs["data-trend-run"] for e in page.elements if "data-trend-run" in e.attrs]
    assert trend == [f"{FLOW}:day1", f"{FLOW}:day0"], "this run first, then the flow's earlier runs only"


def _pii_reasons(runs: Runs, report: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(reason, raw value) of held records whose failing field holds personal data."""
    results = staging.run_results(runs.store, report["run_id"])
    rows = []
    for row in results[results["check_name"].notna()].itertuples():
        spec = runs.config.entities[row.entity].fields.get(row.field or "")
        if spec is not None and spec.pii:
            rows.append((row.reason, row.value if isinstance(row.value, str) else None))
    return rows


def shown(text: str, html: str) -> bool:
    """Whether a text appears in the page, as written or HTML-escaped."""
    return text in html or str(escape(text)) in html


def test_personal_data_is_masked_unless_the_flow_turns_masking_off(runs: Runs) -> None:
    report = next(r for r in runs.reports if r["flow"] == FLOW and _pii_reasons(runs, r))
    pii = _pii_reasons(runs, report)
    html, _ = page_of(report)
    engine = open_engine(sandbox.system_urls(runs.config)["webshop"])
    with engine.connect() as conn:
        table = sandbox.tables()["webshop"].tables["customers"]
        people = conn.execute(select(table.c.email_address, table.c.phone)).all()
    engine.dispose()
    leaked = [v for person in people for v in person if v and shown(v, html)]
    assert not leaked, leaked[:5]
    assert not [reason for reason, _ in pii if shown(reason, html)]
    assert not [value for _, value in pii if value and shown(value, html)]

    flow = runs.config.flows[FLOW]
    unmasked = flow.model_copy(update={"quality": flow.quality.model_copy(update={"mask_pii": False})})
    config = runs.config.model_copy(update={"flows": {**runs.config.flows, FLOW: unmasked}})
    html = report_html.render_run(config, runs.store, report).read_text()
    assert any(shown(reason, html) for reason, _ in pii), "with masking off the raw reasons are shown"


def test_index_lists_every_run_newest_first_with_working_links(runs: Runs) -> None:
    index = report_html.index_path()
    page = Page(index.read_text())
    rows = [e for e in page.elements if e.tag == "tr" and "data-run" in e.attrs]
    assert [r.attrs["data-run"] for r in rows] == [r["run_id"] for r in reversed(runs.reports)]
    started = [r.attrs["data-started"] for r in rows]
    assert started == sorted(started, reverse=True)
    quarantined = [int(e.attrs["data-quarantined"]) for e in page.elements if "data-quarantined" in e.attrs]
    assert quarantined == [r["totals"]["quarantined"] for r in reversed(runs.reports)]
    links = [e.attrs["href"] for e in page.elements if e.tag == "a"]
    assert len(links) == len(runs.reports) and all((index.parent / href).is_file() for href in links)


def test_pages_load_nothing_from_anywhere(runs: Runs) -> None:
    pages = [report_html.index_path(), *(report_html.html_path(r["flow"], r["run_id"]) for r in runs.reports)]
    for path in pages:
        html = path.read_text()
        refs = [v for e in Page(html).elements for k, v in e.attrs.items() if k in ("src", "href")]
        assert refs, path
        assert not [r for r in refs if r.startswith(("http:", "https:", "//", "data:", "javascript:"))], path
        lowered = html.lower()
        assert (
            "<script" not in lowered and "<link" not in lowered and "url(" not in lowered and "@import" not in lowered
        )


def test_quality_checks_alerts_and_data_docs_are_shown_and_escaped(runs: Runs) -> None:
    report = copy.deepcopy(runs.reports[-1])
    report["quality"] = {
        "entities": {
            "customer": {
                "checks": [
                    {
                        "expectation": "expect_column_values_to_match_regex",
                        "column": "email",
                        "severity": "block",
                        "phase": "extract",
                        "evaluated": 20,
                        "unexpected": 2,
                        "success": False,
                        "examples": ["j***@e***.com", {"key": "C0000042", "value": "k***@e***.org"}],
                        "error": None,
                    },
                    {
                        "expectation": "expect_column_values_to_not_be_null",
                        "column": None,
                        "severity": "warn",
                        "phase": "post_load",
                        "evaluated": 0,
                        "unexpected": 0,
                        "success": False,
                        "examples": [],
                        "error": "<all-null column>",
                    },
                ]  # fmt: skip
            }
        },
        "alerts": [
            {
                "entity": "customer",
                "metric": "overwritten",
                "value": 0.2,
                "limit": 0.05,
                "kind": "jump",
                "message": "overwritten share 20% is 4x the recent average",
            }
        ],  # fmt: skip
        "failed_thresholds": ["customer: 10.0% of the batch blocked, more than 5%"],
        "data_docs": "gx/data_docs/index.html",
    }
    html = report_html.render_run(runs.config, runs.store, report).read_text()
    page = Page(html)
    checks = [(e.attrs["data-expectation"], e.attrs["data-unexpected"]) for e in page.elements
              if "data-expectation" in e.attrs]  # fmt: skip
    assert checks == [("expect_column_values_to_match_regex", "2"), ("expect_column_values_to_not_be_null", "0")]
    assert "&lt;all-null column&gt;" in html and "<all-null column>" not in html
    assert "j***@e***.com" in html and "<code>C0000042</code>: k***@e***.org" in html
    assert [e.attrs["data-alert-metric"] for e in page.elements if "data-alert-metric" in e.attrs] == ["overwritten"]
    assert "10.0% of the batch blocked" in html
    assert [e.attrs["href"] for e in page.elements if "data-docs" in e.attrs] == ["gx/data_docs/index.html"]
    finish(runs.store, report["run_id"], report["status"], report)
    report_html.render_index(runs.store)
    (_row,) = [e for e in Page(report_html.index_path().read_text()).elements if e.attrs.get("data-alerts") == "1"]


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and the inflated scanlines of a PNG (filter bytes included)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, data = 8, 0, 0, b""
    while pos < len(png):
        (length,), kind = struct.unpack(">I", png[pos : pos + 4]), png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            data += body
        pos += 12 + length
    return width, height, zlib.decompress(data)


def test_headless_chromium_renders_the_run_page(runs: Runs, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium not installed (apt-get install chromium)")
    page = report_html.html_path(FLOW, runs.reports[-1]["run_id"])
    shot = tmp_path / "run.png"
    quiet = ("--disable-background-networking", "--disable-extensions", "--no-first-run", "--hide-scrollbars")
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *quiet,
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 2000)
    assert len(set(pixels)) > 16, "the screenshot is blank"


def test_report_open_prints_the_latest_page_of_a_flow(runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli.main(["report", "--open", "--flow", "erp_to_stockctl"]) == 0
    path, url = capsys.readouterr().out.split()
    assert Path(path) == report_html.html_path("erp_to_stockctl", "erp_to_stockctl:day0")
    assert url == Path(path).resolve().as_uri() and url.startswith("file:///")


# --- the Airflow plugin: extra link and authenticated report server ------------------------------


def _plugin() -> ModuleType:
    """``plugins/truesync_reports.py`` as Airflow loads it from its plugins folder."""
    spec = importlib.util.spec_from_file_location("truesync_reports", PROJECT_ROOT / "plugins" / "truesync_reports.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def served(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, TestClient, Callable]]:
    """The plugin's app in-process, with Airflow's auth manager and a token factory per role."""
    from airflow import settings
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "truesync-test-secret-" + "0123456789abcdef" * 4)
    RevokedToken.__table__.create(settings.engine, checkfirst=True)  # token checks look up revoked tokens
    manager = create_auth_manager()
    plugin = _plugin()

    def token(role: str | None) -> str:
        return manager.generate_jwt(SimpleAuthManagerUser(username="reviewer", role=role))

    with TestClient(plugin.app) as client:
        yield plugin, client, token


def test_the_extra_link_leads_an_airflow_user_to_the_run_page(served: tuple, runs: Runs) -> None:
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


class _KeepCookie(urllib.request.BaseHandler):
    """Sends the login cookie with every request, redirects included, as a browser does."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        for name, value in self.headers.items():
            request.add_unredirected_header(name, value)
        return request


@pytest.mark.airflow
def test_one_click_from_the_finalize_task_in_a_real_airflow_to_the_report(state: Path) -> None:
    """A real api-server and scheduler: the task's extra link, then the page behind the UI's login cookie."""
    assert cli.main(["sandbox", "init", "--scale", "100"]) == 0
    flow, dag_run = "erp_to_stockctl", "manual__report_link"
    dag_id = f"truesync_{flow}"
    passwords = state / "airflow-passwords.json"
    passwords.write_text(json.dumps({"reviewer": "a-test-password"}))
    users = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "reviewer:viewer",
             "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords)}  # fmt: skip
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
        login = urllib.request.Request(
            f"{base}/auth/token",
            data=json.dumps({"username": "reviewer", "password": "a-test-password"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login) as answer:
            cookie = {"Cookie": f"_token={json.load(answer)['access_token']}"}  # what the UI's browser sends
        api = f"{base}/api/v2/dags/{dag_id}/dagRuns/{dag_run}/taskInstances/finalize/links"
        with urllib.request.urlopen(urllib.request.Request(api, headers=cookie)) as answer:
            link = json.load(answer)["extra_links"]["Run report"]
        assert link.startswith("/truesync/reports/-/dag-run/")
        opener = urllib.request.build_opener(_KeepCookie(cookie))
        with opener.open(base + link) as page:
            html = page.read().decode()
            assert page.url.endswith(report_html.html_path(flow, f"{flow}:{dag_run}").name)
        assert f"{flow}:{dag_run}" in html and 'data-status="success"' in html
    finally:
        airflow.stop()
