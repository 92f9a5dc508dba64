"""A POS drop through a real Airflow: the incremental DAG reads the files, the reprocess DAG applies a new code table.

As a person would: trigger the flow by hand (the first run is the full load), commit a new
version of the code table, trigger ``truesync_<flow>_reprocess`` from the UI with its
``code_table`` param, and find the new meanings in the back office with their audit rows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from pos_drop import FLOW, STATES, Drop, at, events
from sqlalchemy import select

from truesync.pipeline import dags
from truesync.sandbox.localairflow import LocalAirflow
from truesync.store import runs, staging
from truesync.store.schema import audit


def test_files_then_a_new_code_table_version_through_airflow(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drop = Drop(state, monkeypatch)
    drop.write(
        "T1/2026-11-02.csv", events(("E1", "T1", "A00", "10.00", at(0, 9)), ("E2", "T1", "E07", "5.00", at(0, 10)))
    )
    drop.write("T2/2026-11-02.csv", events(("E3", "T2", "X9", "0", at(0, 11))))
    incremental, reprocess = dags.dag_id(FLOW), dags.reprocess_dag_id(FLOW)
    airflow = LocalAirflow(state / "airflow")
    airflow.prepare([incremental, reprocess])
    airflow.trigger(incremental, "manual__first")
    airflow.start()
    try:
        assert airflow.wait_for_run(incremental, "manual__first") == "success"
        assert set(drop.rows()) == {"E1", "E2"} and [e["key"] for e in drop.exceptions()] == ["E3"]
        drop.codes(2, {**STATES, "E07": "payment_declined", "X9": "device_offline"})
        airflow.trigger(reprocess, "manual__codes", json.dumps({"code_table": "pos_states"}))
        assert airflow.wait_for_run(reprocess, "manual__codes") == "success"
    finally:
        groups = [process.pid for process in airflow.processes]
        airflow.stop()
    _check_workers_were_preloaded_and_are_gone(airflow, groups)

    rows = drop.rows()
    assert (rows["E2"]["state"], rows["E3"]["state"]) == ("payment_declined", "device_offline")
    assert drop.exceptions() == []
    run_id = f"{FLOW}:reprocess:manual__codes"
    report = json.loads(runs.get(drop.store, run_id)["report"])
    assert report["kind"] == "reprocess" and report["status"] == "success"
    assert report["entities"]["pos_event"]["outcomes"] == {"created": 1, "updated": 1, "unchanged": 1, "quarantined": 0}
    assert set(staging.run_results(drop.store, run_id)["key"]) == {"E1", "E2", "E3"}
    with drop.store.engine.connect() as conn:
        changed = conn.execute(select(audit.c.key, audit.c.field, audit.c.restored_value)).all()
    assert [tuple(r) for r in changed] == [("E2", "state", "payment_declined")]
    assert runs.watermark(drop.store, FLOW) is not None  # the first run's; the reprocess leaves it


def _check_workers_were_preloaded_and_are_gone(airflow: LocalAirflow, groups: list[int]) -> None:
    """The scheduler started its workers from a forkserver holding the task modules
    (``pipeline.dags.preloaded_workers``), and stopping Airflow left no process of any group behind."""
    scheduler = (airflow.home / "process-logs" / "scheduler.log").read_text()
    assert "Set multiprocessing start method to 'forkserver' for scheduler" in scheduler
    assert f"Set forkserver preload modules for scheduler: {list(dags.TASK_MODULES)}" in scheduler
    assert [group for group in groups if not _emptied(group)] == []


def _emptied(group: int, within: float = 30) -> bool:
    """Whether no process of the group is left within ``within`` seconds (its last exits are reaped)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False
