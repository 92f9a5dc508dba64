"""The HTML run report and index over sandbox runs: parsed back, masked, offline.

The counts in the page are read from its ``data-*`` hooks and compared with the JSON run
report. The browser's view of the page and the Airflow plugin are tested in the airflow tier.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from report_runs import FLOW, Page, Runs, page_of
from sqlalchemy import select

from truesync import cli
from truesync.reporting import html as report_html
from truesync.sandbox import systems as sandbox
from truesync.store import staging
from truesync.store.runs import finish
from truesync.support.sqldb import open_engine


def test_counts_in_the_page_equal_the_run_report(shared_runs: Runs) -> None:
    for report in shared_runs.reports:
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


def test_overdue_records_reasons_and_trend_come_from_the_store(shared_runs: Runs) -> None:
    report = shared_runs.reports[-1]
    _, page = page_of(report)
    results = staging.run_results(shared_runs.store, report["run_id"])
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


def test_index_lists_every_run_newest_first_with_working_links(shared_runs: Runs) -> None:
    index = report_html.index_path()
    page = Page(index.read_text())
    rows = [e for e in page.elements if e.tag == "tr" and "data-run" in e.attrs]
    assert [r.attrs["data-run"] for r in rows] == [r["run_id"] for r in reversed(shared_runs.reports)]
    started = [r.attrs["data-started"] for r in rows]
    assert started == sorted(started, reverse=True)
    quarantined = [int(e.attrs["data-quarantined"]) for e in page.elements if "data-quarantined" in e.attrs]
    assert quarantined == [r["totals"]["quarantined"] for r in reversed(shared_runs.reports)]
    links = [e.attrs["href"] for e in page.elements if e.tag == "a"]
    assert len(links) == len(shared_runs.reports) and all((index.parent / href).is_file() for href in links)


def test_pages_load_nothing_from_anywhere(shared_runs: Runs) -> None:
    pages = [report_html.index_path(), *(report_html.html_path(r["flow"], r["run_id"]) for r in shared_runs.reports)]
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


def test_report_open_prints_the_latest_page_of_a_flow(shared_runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli.main(["report", "--open", "--flow", "erp_to_stockctl"]) == 0
    path, url = capsys.readouterr().out.split()
    assert Path(path) == report_html.html_path("erp_to_stockctl", "erp_to_stockctl:day0")
    assert url == Path(path).resolve().as_uri() and url.startswith("file:///")
