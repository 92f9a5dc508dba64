"""Versioned code tables on the POS drop: the version each record remembers, new codes, reprocess.

Terminal codes become back-office states through ``codes/pos_states.yaml``. A new version
adds an unknown code and corrects a meaning; ``reprocess`` then finds exactly the records
behind it, writes only what changed, audits every replaced value, and does nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pos_drop import FLOW, STATES, Drop, at, counts, events
from sqlalchemy import select

from truesync.cli import main
from truesync.connectors.errors import ConfigurationProblem
from truesync.pipeline.reprocess import run_reprocess
from truesync.reporting.trace import render_text as render_trace
from truesync.reporting.trace import trace
from truesync.store.schema import audit, ledger, results


@pytest.fixture
def drop(state: Path, monkeypatch: pytest.MonkeyPatch) -> Drop:
    drop = Drop(state, monkeypatch)
    drop.write("T1/2026-11-02.csv", events(
        ("E1", "T1", "A00", "10.00", at(0, 9)),
        ("E2", "T1", "E07", "5.00", at(0, 10)),
        ("E3", "T1", "X9", "0", at(0, 11)),  # a code no version knows yet
        ("E4", "T1", "X9", "0", at(0, 12)),
    ))  # fmt: skip
    return drop


def versions(drop: Drop, table: Any, run_id: str | None = None) -> dict[str, str | None]:
    query = select(table.c.key, table.c.code_versions)
    if run_id is not None:
        query = query.where(table.c.run_id == run_id)
    with drop.store.engine.connect() as conn:
        return dict(conn.execute(query).all())


def audits(drop: Drop) -> list[tuple[str, str, str, str]]:
    query = select(audit.c.key, audit.c.field, audit.c.overwritten_value, audit.c.restored_value).order_by(audit.c.key)
    with drop.store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def test_each_record_remembers_the_version_and_new_codes_raise_an_alert(drop: Drop) -> None:
    report = drop.run(0)
    assert set(drop.rows()) == {"E1", "E2"} and drop.rows()["E2"]["state"] == "payment_failed"
    assert versions(drop, ledger) == {"E1": "pos_states@1", "E2": "pos_states@1"}
    assert set(versions(drop, results, "run1").values()) == {"pos_states@1"}
    (alert,) = [a for a in report["quality"]["alerts"] if a["kind"] == "new_codes"]
    assert alert["codes"] == [
        {"field": "state", "code": "X9", "records": 2, "first_seen": alert["codes"][0]["first_seen"]}
    ]
    assert "state 'X9' (2 records, first seen " in alert["message"]
    held = {e["key"]: e["reason"] for e in drop.exceptions()}
    assert held["E3"].startswith("unknown code 'X9' in column 'code' (code table pos_states@1)")


def test_reprocess_writes_only_what_the_new_version_changes_and_audits_it(drop: Drop) -> None:
    drop.run(0)
    before = drop.rows()
    drop.codes(2, {**STATES, "E07": "payment_declined", "X9": "device_offline"})  # a meaning corrected, a code added

    planned = run_reprocess(drop.config, drop.store, FLOW, drop.run_id(), dry_run=True)
    assert (counts(planned)["updated"], counts(planned)["created"], counts(planned)["unchanged"]) == (1, 2, 1)
    assert drop.rows() == before and audits(drop) == [] and versions(drop, ledger)["E1"] == "pos_states@1"

    report = run_reprocess(drop.config, drop.store, FLOW, drop.run_id())
    numbers = counts(report)
    assert (numbers["extracted"], numbers["updated"], numbers["created"], numbers["unchanged"]) == (4, 1, 2, 1)
    assert numbers["exceptions_resolved"] == 2 and drop.exceptions() == []
    rows = drop.rows()
    assert rows["E2"]["state"] == "payment_declined" and rows["E3"]["state"] == "device_offline"
    assert rows["E1"]["modified_at"] == before["E1"]["modified_at"]  # translated the same: not rewritten
    assert audits(drop) == [("E2", "state", "payment_failed", "payment_declined")]
    assert set(versions(drop, ledger).values()) == {"pos_states@2"}
    assert report["kind"] == "reprocess" and "watermark" not in report
    assert report["entities"]["pos_event"]["code_versions"] == "pos_states@2"
    page = Path(report["html"]).read_text()
    assert 'data-code-versions="pos_event">pos_event: translated through code tables pos_states@2' in page
    assert report["entities"]["pos_event"]["overdue"] == 0

    again = run_reprocess(drop.config, drop.store, FLOW, drop.run_id())
    assert counts(again)["extracted"] == 0 and len(audits(drop)) == 1
    path = render_trace(trace(drop.config, drop.store, FLOW, "pos_event", "E2"))
    assert "codes pos_states@1" in path and "codes pos_states@2" in path  # each run's version, and the ledger's
    assert "(mapping pos@1->backoffice@1, codes pos_states@2)" in path


def test_reprocess_from_the_command_line_for_one_table(drop: Drop, capsys: pytest.CaptureFixture[str]) -> None:
    drop.run(0)
    drop.codes(2, {**STATES, "X9": "device_offline"})
    env = {"TRUESYNC_CONFIG_DIR": str(drop.directory), "AIRFLOW_CONN_TRUESYNC_STORE": str(drop.store.url)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert main(["reprocess", FLOW, "--code-table", "pos_states", "--entity", "pos_event", "-q"]) == 0
        assert "pos_event" in capsys.readouterr().out
        assert main(["reprocess", FLOW, "--code-table", "till_codes", "-q"]) != 0
        assert "no code table 'till_codes'" in capsys.readouterr().err
    assert drop.rows()["E4"]["state"] == "device_offline"


def test_a_table_changed_without_a_new_version_stops_the_run(drop: Drop) -> None:
    drop.run(0)
    drop.codes(1, {**STATES, "X9": "device_offline"})
    with pytest.raises(
        ConfigurationProblem, match=r"codes/pos_states.yaml: version: the codes changed but version '1'"
    ):
        drop.run(1)


def test_a_code_is_unknown_to_records_changed_before_it_is_valid(drop: Drop) -> None:
    drop.codes(1, {**STATES, "X9": {"value": "device_offline", "valid_from": at(0, 12)}})
    drop.run(0)
    assert set(drop.rows()) == {"E1", "E2", "E4"}  # E3 changed at 11:00, before the code was valid
    (reason,) = [e["reason"] for e in drop.exceptions()]
    assert reason.startswith("code 'X9' in column 'code' (code table pos_states@1) is not valid yet")


def test_a_terminal_offline_with_nothing_since_raises_an_alert_until_it_speaks(drop: Drop) -> None:
    def silent(report: dict[str, Any]) -> list[str]:
        return [a["group"] for a in report["quality"]["alerts"] if a["kind"] == "silent"]

    drop.write("T2/2026-11-02.csv", events(("E5", "T2", "D00", "", at(0, 9)), ("E6", "T2", "D00", "", at(0, 22))))
    drop.write("T3/2026-11-02.csv", events(("E7", "T3", "D00", "", at(0, 8))))
    first = drop.run(0)
    assert sorted(silent(first)) == ["T3"]  # T1 last paid; T2 went offline two hours before the window's end
    (alert,) = [a for a in first["quality"]["alerts"] if a["kind"] == "silent"]
    assert (
        "terminal 'T3' last reported state 'device_offline' at 2026-11-02 08:00 and nothing since" in alert["message"]
    )
    drop.write("T3/2026-11-01.csv", events(("E8", "T3", "D01", "", at(-1, 23))))  # late, and older: changes nothing
    assert sorted(silent(drop.run(1))) == ["T2", "T3"]
    drop.write("T3/2026-11-03.csv", events(("E9", "T3", "D01", "", at(1, 10))))
    drop.write("T2/2026-11-03.csv", events(("E10", "T2", "A00", "1.00", at(1, 11))))
    assert silent(drop.run(1)) == []
