"""The dashboard plugin in-process behind Airflow's auth manager: who may see and do what, the board
and the queue against the store, decisions that the next run acts on, bad input, and screenshots.

The real API server (the navigation entry, the login cookie, *Sync now* through Airflow's API) is
in ``test_report_html``'s end-to-end test, which starts one anyway.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from canary import CANARY, leaks
from fastapi.testclient import TestClient
from one_dag_auth import ONLY
from plugin_client import Token, plugin_client, screenshot
from report_runs import FLOW, Page, Runs
from sqlalchemy.engine import URL

from truesync.core.classify import REPORTED_CLASSES
from truesync.reporting.board import SEVERITY
from truesync.store import queue, runs
from truesync.store.queue import ACTIVE

OTHER = "erp_to_stockctl"
ORIGIN = {"origin": "http://testserver"}
GETS = ("/", "/board.json", "/queue", "/queue.csv", "/queue.json", f"/record/{FLOW}/customer/C0000001")


@pytest.fixture
def dash(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Runs, TestClient, Token]]:
    with plugin_client("truesync_dashboard", monkeypatch) as (_, client, token):
        yield runs, client, token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _csrf(client: TestClient, headers: dict[str, str]) -> str:
    """The form token of the caller's pages, read from one as a browser has it."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/queue", headers=headers).text)
    assert found, "the queue page carries the form token"
    return found.group(1)


def _decide(client: TestClient, headers: dict[str, str], **form: Any) -> Any:
    return client.post("/queue/decide", data=form, headers={**headers, **ORIGIN}, follow_redirects=False)


def _done(answer: Any) -> str:
    assert answer.status_code == 303, answer.text
    return parse_qs(urlsplit(answer.headers["location"]).query)["done"][0]


def _active(runs_: Runs, flow: str) -> list[dict[str, Any]]:
    return [e for e in queue.list_exceptions(runs_.store, flow=flow) if e["status"] in ACTIVE]


def test_every_route_answers_by_role_and_fails_closed(dash: tuple) -> None:
    runs_, client, token = dash
    viewer, operator = _auth(token("viewer", "viewer")), _auth(token("op", "operator"))
    for path in GETS:
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer not-a-token"}).status_code in (401, 403), path
        answer = client.get(path, headers=viewer)
        assert answer.status_code == 200, path
        assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert client.post("/queue/decide", data={"action": "retry"}).status_code == 401
    assert client.post(f"/sync/{FLOW}").status_code == 401

    exception = _active(runs_, FLOW)[0]
    viewer_csrf, operator_csrf = _csrf(client, viewer), _csrf(client, operator)
    assert viewer_csrf != operator_csrf, "the form token belongs to the caller"
    form = {"action": "ignore", "reason": "known test record", "id": exception["id"]}
    assert _decide(client, viewer, csrf=viewer_csrf, **form).status_code == 403, "reading is not acting"
    assert client.post(f"/sync/{FLOW}", data={"csrf": viewer_csrf}, headers={**viewer, **ORIGIN}).status_code == 403
    assert _decide(client, operator, **form).status_code == 403, "no form token"
    assert _decide(client, operator, csrf=viewer_csrf, **form).status_code == 403, "another user's form token"
    cross = {**operator, "origin": "http://evil.example"}
    assert client.post("/queue/decide", data={**form, "csrf": operator_csrf}, headers=cross).status_code == 403
    assert queue.get(runs_.store, exception["id"])["status"] == "open", "no refused request changed anything"
    assert _done(_decide(client, operator, csrf=operator_csrf, **form)) == "1 marked ignored"
    decided = queue.get(runs_.store, exception["id"])
    assert (decided["status"], decided["note"], decided["decided_by"]) == ("ignored", "known test record", "operator")
    again = _decide(client, operator, csrf=operator_csrf, **form)
    assert _done(again) == "0 marked ignored; left as they were: 1 ignored"
    shown = client.get(again.headers["location"], headers=operator).text
    assert "0 marked ignored; left as they were: 1 ignored" in shown


def test_a_user_sees_and_touches_only_the_flows_they_may_read(dash: tuple) -> None:
    runs_, client, token = dash
    one = _auth(token("op", f"{ONLY}truesync_{FLOW}"))
    rows = client.get("/board.json", headers=one).json()
    assert rows and {r["flow"] for r in rows} == {FLOW}
    board = Page(client.get("/", headers=one).text)
    assert {e.attrs["data-flow"] for e in board.elements if e.tag == "tr" and "data-flow" in e.attrs} == {FLOW}
    assert {e["flow"] for e in client.get("/queue.json", headers=one).json()} == {FLOW}
    assert client.get("/queue.csv", headers=one).text.count(OTHER) == 0
    assert client.get(f"/queue?flow={OTHER}", headers=one).status_code == 403
    for export in ("/queue.csv", "/queue.json"):  # refused before the download starts
        assert client.get(f"{export}?flow={OTHER}", headers=one).status_code == 403
        assert client.get(f"{export}?older_than_days=abc", headers=one).status_code == 422
    assert client.get("/record/no_such_flow/customer/C1", headers=one).status_code == 403, "no probing for flows"
    assert client.get(f"/record/{OTHER}/stock_item/S0000001", headers=one).status_code == 403
    csrf = _csrf(client, one)
    assert client.post(f"/sync/{OTHER}", data={"csrf": csrf}, headers={**one, **ORIGIN}).status_code == 403
    theirs = _active(runs_, OTHER)
    assert theirs, "the other flow has exceptions to protect"
    everything = {"action": "resolve", "reason": "bulk", "everything": "yes", "csrf": csrf}
    mine = len(_active(runs_, FLOW))
    assert _done(_decide(client, one, **everything)).startswith(f"{mine} marked resolved")
    assert _active(runs_, OTHER) == theirs, "everything matching means everything the user may touch"
    assert client.get("/board.json", headers=_auth(token(None, "nobody"))).json() == [], "no role, no rows"


def test_the_board_and_the_queue_say_what_the_store_holds(dash: tuple) -> None:
    runs_, client, token = dash
    viewer = _auth(token("viewer"))
    rows = client.get("/board.json", headers=viewer).json()
    config = runs_.config
    severities = [SEVERITY[r["state"]] for r in rows]
    assert severities == sorted(severities), "worst first"
    assert {(r["flow"], r["entity"]) for r in rows} == {(f, e) for f in config.flows for e in config.flows[f].entities}
    page = Page(client.get("/", headers=viewer).text)
    for row in rows:
        open_now = sum(e["entity"] == row["entity"] for e in _active(runs_, row["flow"]))
        assert row["open_exceptions"] == open_now
        tr = [e for e in page.elements if e.tag == "tr" and e.attrs.get("data-flow") == row["flow"]
              and e.attrs.get("data-entity") == row["entity"]]  # fmt: skip
        assert tr[0].attrs["data-open"] == str(open_now) and tr[0].attrs["data-state"] == row["state"]
        latest = runs.latest(runs_.store, row["flow"], finished=True)
        if row["flow"] in (FLOW, OTHER):
            counts = runs.entity_counts(runs_.store, latest[0]["run_id"])[row["entity"]]
            assert {c: row["classes"][c] for c in REPORTED_CLASSES} == {c: counts[c] for c in REPORTED_CLASSES}
            assert row["state"] == "late", "the demo's last window is weeks old"
            assert row["report"].endswith(".html")
        else:
            assert (row["last_run"], row["classes"], row["state"]) == (None, None, "late"), "never ran"
    queue_page = client.get(f"/queue?flow={FLOW}&status=open", headers=viewer).text
    total = len([e for e in queue.list_exceptions(runs_.store, flow=FLOW) if e["status"] == "open"])
    assert f'data-total="{total}"' in queue_page
    exported = client.get(f"/queue.json?flow={FLOW}&status=open", headers=viewer).json()
    assert len(exported) == total and all("@" not in e["payload"] or "***@" in e["payload"] for e in exported)
    csv_lines = client.get(f"/queue.csv?flow={FLOW}&status=open", headers=viewer).text.strip().splitlines()
    assert csv_lines[0].startswith("id,flow,entity,key,class") and len(csv_lines) >= total + 1


def test_an_operators_retry_is_what_the_next_run_picks_up(dash: tuple) -> None:
    runs_, client, token = dash
    operator = _auth(token("op", "operator"))
    csrf = _csrf(client, operator)
    held = _active(runs_, FLOW)[0]
    ignore = {"action": "ignore", "reason": "not ours", "id": held["id"], "csrf": csrf}
    assert _done(_decide(client, operator, **ignore)) == "1 marked ignored"
    runs_.run(FLOW, 2)
    assert queue.get(runs_.store, held["id"])["run_id"] == held["run_id"], "an ignored exception is left alone"
    retry = {"action": "retry", "reason": "fixed at the source", "everything": "yes", "csrf": csrf,
             "flow": FLOW, "status": "ignored", "key": held["key"]}  # fmt: skip
    assert _done(_decide(client, operator, **retry)) == "1 marked retrying"
    assert queue.get(runs_.store, held["id"])["status"] == "retrying"
    runs_.run(FLOW, 3)
    picked = queue.get(runs_.store, held["id"])
    assert picked["run_id"] == f"{FLOW}:day3", "the next run took the retried record up again"


def test_bad_input_and_injection_are_refused_or_escaped(dash: tuple) -> None:
    _, client, token = dash
    operator = _auth(token("op", "operator"))
    csrf = _csrf(client, operator)
    assert client.get(f"/record/{FLOW}/customer/%01x", headers=operator).status_code == 422
    assert client.get("/record/no_such_flow/customer/C1", headers=operator).status_code == 404
    assert client.get(f"/record/{FLOW}/stock_item/C1", headers=operator).status_code == 404
    script = client.get(f"/record/{FLOW}/customer/%3Cscript%3Ealert(1)%3C%2Fscript%3E", headers=operator)
    assert script.status_code == 200 and "<script>" not in script.text and "&lt;script&gt;" in script.text
    for age in ("abc", "²", "99999999", "-1"):
        assert client.get(f"/queue?older_than_days={age}", headers=operator).status_code == 422, age
    for bad_id in ("²", "99999999999"):
        assert _decide(client, operator, csrf=csrf, action="retry", reason="x", id=bad_id).status_code == 422
    assert 'role="status"' not in client.get("/?done=Session+expired,+sign+in+at+evil.example", headers=operator).text
    assert 'data-total="0"' in client.get("/queue?key=%25%27%20OR%201%3D1%20--", headers=operator).text
    assert _decide(client, operator, csrf=csrf, action="retry", reason="x", id="1 OR 1=1").status_code == 422
    assert _decide(client, operator, csrf=csrf, action="explode", reason="x", id="1").status_code == 422
    assert _decide(client, operator, csrf=csrf, action="retry", reason="", id="1").status_code == 422
    assert "nothing selected" in _done(_decide(client, operator, csrf=csrf, action="retry", reason="x"))
    found = client.get(f"/record?flow={FLOW}&entity=customer&key=C0000001", headers=operator, follow_redirects=False)
    assert found.headers["location"] == f"/record/{FLOW}/customer/C0000001"


def test_a_record_of_a_composite_key_links_from_the_queue_to_its_page(dash: tuple) -> None:
    """An order line, keyed by order and line number, named ``<order>|<line>`` from queue to record page."""
    runs_, client, token = dash
    operator, books = _auth(token("op", "operator")), "webshop_to_accounting"
    runs_.run(books, 0)
    held = [e for e in _active(runs_, books) if e["entity"] == "order_line"]
    key = held[0]["key"]
    order, number = key.split("|")
    link = f"/record/{books}/order_line/{quote(key, safe='')}"
    assert f'href="{link}"' in client.get(f"/queue?flow={books}&entity=order_line", headers=operator).text
    page = Page(client.get(link, headers=operator).text)
    assert [e.text for e in page.elements if e.tag == "code"][0] == key
    fields = [e.attrs["data-field"] for e in page.elements if e.tag == "tr" and "data-field" in e.attrs]
    assert fields[:2] == ["order_id", "line_no"], "the key's fields come first"
    cells = [e.text for e in page.elements if e.tag == "td"]
    assert (cells[2], cells[7]) == (order, number), "the shop's record, read by its two key columns"


def test_a_csv_cell_never_starts_a_spreadsheet_formula(dash: tuple) -> None:
    runs_, client, token = dash
    problem = {"key": "=HYPERLINK(\"http://evil.example\")", "class": "invalid", "check_name": "c", "field": "f",
               "reason": "+cmd|' /C calc'!A0", "payload": "{}"}  # fmt: skip
    queue.quarantine(runs_.store, FLOW, "customer", f"{FLOW}:day1", [problem])
    text = client.get(f"/queue.csv?flow={FLOW}&key=HYPERLINK", headers=_auth(token("viewer"))).text
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["key"].startswith("'=HYPERLINK(") and row["reason"].startswith("'+cmd|")


def test_headless_chromium_renders_the_board_the_queue_and_a_record(dash: tuple, tmp_path: Path) -> None:
    runs_, client, token = dash
    viewer = _auth(token("viewer"))
    key = next(e["key"] for e in _active(runs_, FLOW) if e["entity"] == "customer" and e["key"].startswith("C"))
    pages = {"board": "/", "queue": "/queue", "record": f"/record/{FLOW}/customer/{key}"}
    for name, path in pages.items():
        html = client.get(path, headers=viewer).text
        assert "<script" not in html and "http://" not in html.split("</head>")[0], "nothing fetched from elsewhere"
        page = tmp_path / f"{name}.html"
        page.write_text(html)
        for width in (1280, 420):  # desktop and a narrow screen
            shot = screenshot(page, tmp_path / f"{name}-{width}.png", width, 900)
            assert shot[:2] == (width, 900)
            assert len(set(shot[2])) > 16, f"the {name} screenshot at {width}px is blank"
    record = Page(client.get(pages["record"], headers=viewer).text)
    assert [e.attrs["data-class"] for e in record.elements if e.tag == "tr" and "data-outcome" in e.attrs]
    assert json.loads(client.get("/board.json", headers=viewer).text)


def test_no_page_shows_a_connections_secret_even_when_its_system_is_down(
    dash: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record page reads both systems live: with the CRM unreachable under a canary password,
    every page (and the reports plugin's) still names the system and never the secret."""
    runs_, client, token = dash
    down = URL.create("postgresql+psycopg2", "postgres", CANARY, "127.0.0.1", 1, "crm")
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_CRM", down.render_as_string(hide_password=False))
    viewer = _auth(token("viewer", "viewer"))
    held = _active(runs_, FLOW)[0]
    pages = {
        path: client.get(path, headers=viewer) for path in (*GETS, f"/record/{FLOW}/{held['entity']}/{held['key']}")
    }
    assert all(page.status_code == 200 for page in pages.values()), {p: a.status_code for p, a in pages.items()}
    record = pages[f"/record/{FLOW}/customer/C0000001"].text
    assert "crm" in record and "unreachable" in record.lower(), "the page says which system is down"
    with plugin_client("truesync_reports", monkeypatch) as (_, reports, report_token):
        index = reports.get("/", headers=_auth(report_token("viewer", "viewer")))
    assert index.status_code == 200
    for path, page in {**pages, "reports index": index}.items():
        assert not leaks(page.text) and not leaks(str(page.headers)), path
