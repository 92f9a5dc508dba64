"""Daily runs through real Airflow, the CI-sized part of ``make month``: three days, one after the
other, each judged against its labels, with staging empty after every run and the per-run detail
kept for the flows' retention (two runs here)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from truesync.cli import main as truesync
from truesync.sandbox import DEMO_START
from truesync.sandbox.chaos import FLOWS, QUICK_RETRIES
from truesync.sandbox.month import run_month
from truesync.sandbox.sessions import configured
from truesync.store import Store
from truesync.store.schema import results

DAYS, KEPT = 3, 2


def test_daily_runs_stay_right_leave_no_staging_and_keep_results_for_the_retention(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {**QUICK_RETRIES, "retention": {"results_runs": KEPT}}
    monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(configured(tmp_path / "config", settings)))
    assert truesync(["sandbox", "init", "--scale", "200", "--days", str(DAYS)]) == 0
    month = run_month(state, DEMO_START, DAYS)
    assert [d.day for d in month.days] == [DEMO_START + timedelta(days=n) for n in range(DAYS)]
    assert month.clean, month
    assert all(d.records > 20 and d.tables["ts_staging"] == 0 for d in month.days), month
    assert month.days[-1].tables["ts_ledger"] > month.days[0].tables["ts_ledger"], "new records every day"
    with Store().engine.connect() as conn:
        kept = {run_id for (run_id,) in conn.execute(results.select().with_only_columns(results.c.run_id).distinct())}
    assert len(kept) == KEPT * len(FLOWS), kept
    assert all(min(month.run_times(flow)) > 0 for flow in FLOWS), "each DAG run's time, from Airflow"
