"""kill -9 through real Airflow, the CI-sized part of ``make chaos``: five task processes killed
at seeded failpoints (extract, between the target write and the ledger write, after it, and in
finalize after the watermark moved) while the SQL flows are backfilled, one of them with its
supervisor (a dead worker, found by the heartbeat's timeout); Airflow retries each killed task
and every run completes with nothing lost, duplicated or misclassified."""

from __future__ import annotations

from pathlib import Path

import pytest

from truesync.cli import main as truesync
from truesync.sandbox.chaos import QUICK_RETRIES, plan, run_session
from truesync.sandbox.sessions import configured
from truesync.support.failpoints import WORKER

SEED = 3


def test_tasks_killed_at_failpoints_are_retried_and_nothing_is_lost(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(configured(tmp_path / "c", QUICK_RETRIES)))
    assert truesync(["sandbox", "init", "--scale", "200"]) == 0
    kills = plan(SEED, 5)
    assert {"sync.target_written"} <= {k.point for k in kills}, "the seed kills between target and ledger write"
    assert [k.kills for k in kills].count(WORKER) == 1, "one kill takes the supervisor: the heartbeat's timeout"
    verdict = run_session(state, kills)
    assert sorted(verdict.hit) == sorted(k.label for k in kills), verdict
    assert verdict.retried >= len(kills), verdict
    assert verdict.clean, verdict
    assert verdict.records > 200, "labelled records and ledger entries"
