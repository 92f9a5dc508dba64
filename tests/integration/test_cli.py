"""The ``truesync`` command as a person uses it after runs: reports, summary, the exception queue."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from sandbox_demo import Demo
from shared_setup import left_as_is, module_state

from truesync.cli import main as truesync
from truesync.config import load_config
from truesync.sandbox import systems as sandbox
from truesync.store import Store, queue, runs
from truesync.support.paths import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "include" / "config"


def _sync_first_day(state: Path) -> Path:
    """The sandbox synced over its first demo day by ``truesync run``."""
    assert truesync(["sandbox", "init", "--scale", "150"]) == 0
    start, end = sandbox.DEMO_START.isoformat(), sandbox.DEMO_START.replace(day=2).isoformat()
    assert truesync(["run", "webshop_to_crm", "--start", f"{start}T00:00:00Z", "--end", f"{end}T00:00:00Z"]) == 0
    return state


@pytest.fixture
def ran(state: Path) -> Path:
    """The sandbox synced over its first demo day, for a test that runs flows or decides exceptions."""
    return _sync_first_day(state)


@pytest.fixture(scope="module")
def module_ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``ran`` built once per module, with handles on the systems to check they stay as built."""
    with module_state(tmp_path_factory, "ran") as state:
        _sync_first_day(state)
        config = load_config()
        demo = Demo(config, Store(), state, sandbox.system_urls(config))
        try:
            yield demo
        finally:
            demo.close()


@pytest.fixture
def shared_ran(module_ran: Demo) -> Iterator[Path]:
    """The module's synced sandbox, for a test that only reads the runs and the queue: it fails if it changes them."""
    with left_as_is(module_ran, "the synced sandbox"):
        yield module_ran.state


def test_report_as_json_and_its_file(shared_ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert truesync(["report", "--flow", "webshop_to_crm", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flow"] == "webshop_to_crm" and report["status"] == "success"
    assert report["window"] == {"start": "2026-11-01T00:00:00", "end": "2026-11-02T00:00:00"}
    customer = report["entities"]["customer"]
    assert customer["conserved"] and customer["extracted"] == sum(customer["outcomes"].values())
    assert truesync(["report", "--open"]) == 0
    path, url = capsys.readouterr().out.split()
    assert Path(path).suffix == ".html" and report["run_id"] in Path(path).read_text() and url == Path(path).as_uri()


def test_report_table_and_summary(shared_ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert truesync(["report"]) == 0
    table = capsys.readouterr().out
    assert "customer" in table and "quarantined" in table
    assert truesync(["summary"]) == 0
    summary = capsys.readouterr().out
    assert "webshop_to_crm" in summary and "erp_to_stockctl" in summary and "mismatched" in summary


def test_unknown_run_and_flow_are_clear_errors(shared_ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert truesync(["report", "--run", "nope"]) == 1
    assert "no run 'nope'" in capsys.readouterr().err
    assert truesync(["run", "nope", "--start", "2026-11-01", "--end", "2026-11-02"]) == 1
    assert "unknown flow 'nope'" in capsys.readouterr().err


def test_exception_queue_list_show_and_decisions(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert truesync(["exceptions", "list", "--flow", "webshop_to_crm", "--entity", "customer", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed and all(e["entity"] == "customer" and e["status"] == "open" for e in listed)
    first = listed[0]

    assert truesync(["exceptions", "show", str(first["id"])]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["key"] == first["key"] and shown["reason"] and shown["payload"]

    assert truesync(["exceptions", "list", "--class", "invalid"]) == 0
    assert "exception(s)" in capsys.readouterr().out

    assert truesync(["exceptions", "ignore", str(first["id"]), "--reason", "test record"]) == 0
    assert queue.get(Store(), first["id"])["status"] == "ignored"
    assert truesync(["exceptions", "retry", str(first["id"])]) == 0
    assert queue.get(Store(), first["id"])["status"] == "retrying"
    assert truesync(["exceptions", "resolve", str(first["id"]), "--reason", "fixed by hand"]) == 0
    resolved = queue.get(Store(), first["id"])
    assert (resolved["status"], resolved["note"]) == ("resolved", "fixed by hand")
    assert resolved["decided_by"].endswith("(shell)") and resolved["decided_at"] is not None
    capsys.readouterr()
    assert truesync(["exceptions", "retry", str(first["id"])]) == 0
    assert capsys.readouterr().out.strip() == "0 marked retrying; left as they were: 1 resolved"
    assert truesync(["exceptions", "resolve", str(first["id"]), "999999", "--reason", "x"]) == 1
    assert "no exception with id 999999" in capsys.readouterr().err

    assert truesync(["exceptions", "show", "999999"]) == 1
    assert "no exception with id 999999" in capsys.readouterr().err


def _crm_rows(state: Path) -> list[list[tuple]]:
    with sqlite3.connect(state / "sandbox" / "crm.db") as conn:
        return [conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in ("contacts", "deals")]


@pytest.mark.parametrize("dry", [True, False])
def test_dry_run_from_the_command_line_writes_nothing(ran: Path, capsys: pytest.CaptureFixture[str], dry: bool) -> None:
    before = _crm_rows(ran)
    capsys.readouterr()
    args = ["run", "webshop_to_crm", "--start", "2026-11-02T00:00:00", "--end", "2026-11-03T00:00:00"]
    assert truesync(args + (["--dry-run"] if dry else [])) == 0
    assert ("dry run: nothing written" in capsys.readouterr().out) is dry
    assert (_crm_rows(ran) == before) is dry, "a dry run writes nothing; the same real run does"


def test_runs_lists_the_store_newest_first_and_filters_by_flow(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    day2 = ["--start", "2026-11-02T00:00:00", "--end", "2026-11-03T00:00:00"]
    assert truesync(["run", "erp_to_stockctl", *day2]) == 0
    assert truesync(["run", "webshop_to_crm", *day2, "--dry-run"]) == 0
    store = Store()
    runs.begin(store, "webshop_to_crm:manual__in_progress", "webshop_to_crm", datetime(2026, 11, 3),
               datetime(2026, 11, 4), dry_run=False)  # fmt: skip
    runs.record_counts(store, "webshop_to_crm:manual__in_progress", "customer", "extract", {"extracted": 7})
    capsys.readouterr()

    assert truesync(["runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in listed] == [
        "webshop_to_crm:manual__in_progress",
        "webshop_to_crm:manual__2026-11-02T00:00:00",
        "erp_to_stockctl:manual__2026-11-02T00:00:00",
        "webshop_to_crm:manual__2026-11-01T00:00:00+00:00",
    ]
    assert [r["started_at"] for r in listed] == sorted((r["started_at"] for r in listed), reverse=True)
    for row in listed:
        stored = runs.get(store, row["run_id"])
        assert (row["flow"], row["status"], row["dry_run"]) == (stored["flow"], stored["status"], stored["dry_run"])
        assert (row["window_start"], row["window_end"]) == (
            stored["window_start"].isoformat(),
            stored["window_end"].isoformat(),
        )
        if stored["report"]:
            report = json.loads(stored["report"])
            assert {c: row[c] for c in report["totals"]} == report["totals"]
            assert row["status_label"] == report["status_label"]
    running = listed[0]
    assert (running["status"], running["status_label"], running["extracted"]) == ("running", "running", 7)
    assert [r["dry_run"] for r in listed] == [False, True, False, False]

    assert truesync(["runs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["run", "id", "flow", "window"]
    assert [line.split()[0] for line in table[1:5]] == [r["run_id"] for r in listed]
    assert table[2].endswith("dry run") and not table[3].endswith("dry run")
    assert "4 run(s)" in table[5]

    assert truesync(["runs", "--flow", "erp_to_stockctl", "--json"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == ["erp_to_stockctl:manual__2026-11-02T00:00:00"]
    assert truesync(["runs", "--flow", "webshop_to_crm_api"]) == 0, "a configured flow without runs yet"
    assert "0 run(s)" in capsys.readouterr().out
    assert truesync(["runs", "--limit", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == listed[:2]


def test_runs_of_an_unknown_flow_is_a_clear_error(shared_ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert truesync(["runs", "--flow", "nope"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith(
        "error: unknown flow 'nope' (known: compliance_to_crm, crm_to_accounting, "
    )
    assert "Traceback" not in out.err


def test_a_failed_run_prints_its_report_and_the_reason_without_a_traceback(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    flows = yaml.safe_load((config / "flows.yaml").read_text())
    flows["flows"]["erp_to_stockctl"]["quality"] = {"max_blocked_share": 0.01, "min_records": 0}
    (config / "flows.yaml").write_text(yaml.safe_dump(flows, sort_keys=False))
    monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(config))
    assert truesync(["sandbox", "init", "--scale", "150"]) == 0
    capsys.readouterr()
    assert truesync(["run", "erp_to_stockctl", "--start", "2026-11-01", "--end", "2026-11-02"]) == 1
    out = capsys.readouterr()
    assert out.out.startswith("run erp_to_stockctl:manual__2026-11-01T00:00:00  flow erp_to_stockctl  failed")
    assert "stock_item" in out.out
    last = out.err.splitlines()[-1]  # after the run's progress log
    assert last.startswith("error: run erp_to_stockctl:manual__2026-11-01T00:00:00 failed its data-quality thresholds")
    assert "Traceback" not in out.err
