"""What the store keeps of a finished run: no staged record, per-record results for the flow's
``retention.results_runs`` newest runs, Data Docs for its ``retention.data_docs_runs`` newest
(``docs/operating.md``, "What the store keeps")."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_demo import DEMO_START, SHOP_FLOW, Demo, assert_conserved
from sqlalchemy import Table, func, select

from truesync.config import RetentionConfig
from truesync.pipeline.extract import NULL_KEY_PREFIX
from truesync.pipeline.finalize import finish_run, purge
from truesync.pipeline.job import EntityJob
from truesync.pipeline.load import StagingDropped, sync_entity
from truesync.reporting.report import reports_dir
from truesync.sandbox import systems as sandbox
from truesync.store import queue, runs, staging
from truesync.store.schema import checks, results
from truesync.store.schema import staging as staged_rows


def _per_run(demo: Demo, table: Table) -> dict[str, int]:
    with demo.store.engine.connect() as conn:
        rows = conn.execute(select(table.c.run_id, func.count()).group_by(table.c.run_id)).all()
    return {run_id: int(n) for run_id, n in rows}


def test_every_finished_run_leaves_staging_empty_and_keeps_its_results(demo: Demo) -> None:
    for day in range(sandbox.DEMO_DAYS):
        report = demo.run(SHOP_FLOW, day)
        assert_conserved(demo, report)  # read from the results: they stay
        assert _per_run(demo, staged_rows) == {}, f"staging after day {day}"
    assert len(_per_run(demo, results)) == sandbox.DEMO_DAYS


def test_results_and_data_docs_beyond_the_flows_retention_are_dropped_and_reports_stay(demo: Demo) -> None:
    demo.config.flows[SHOP_FLOW].retention = RetentionConfig(results_runs=2, data_docs_runs=1)
    reports = [demo.run(SHOP_FLOW, day) for day in range(sandbox.DEMO_DAYS)]
    kept = {r["run_id"] for r in reports[-2:]}
    assert set(_per_run(demo, results)) == kept
    assert set(_per_run(demo, checks)) == kept  # the check statistics: in the report already
    assert [p.name for p in reports_dir(SHOP_FLOW).glob("*.datadocs")] == [Path(reports[-1]["path"]).stem + ".datadocs"]
    oldest = runs.get(demo.store, reports[0]["run_id"])
    assert oldest["status"] == "success" and oldest["report"]  # its counts and report stay
    assert Path(reports[0]["path"]).exists() and Path(reports[0]["html"]).exists()


def test_a_broken_run_keeps_its_staged_records_until_it_ages_out(demo: Demo) -> None:
    report = demo.run(SHOP_FLOW, 0)
    job = EntityJob(demo.config, demo.store, SHOP_FLOW, "customer", report["run_id"])
    left = [{"key": f"C{n}", "source_ts": DEMO_START, "payload": "{}", "check_name": None} for n in range(3)]
    staging.stage(demo.store, job.run_id, job.entity, left)  # as if the run's numbers had not added up
    purge(demo.store, SHOP_FLOW, job.run_id, RetentionConfig(), conserved=False)
    assert _per_run(demo, staged_rows) == {job.run_id: 3}
    demo.config.flows[SHOP_FLOW].retention = RetentionConfig(results_runs=1)
    demo.run(SHOP_FLOW, 1)
    assert _per_run(demo, staged_rows) == {}, "aged out"


def test_a_run_still_running_keeps_its_staged_records_however_many_newer_runs_finish(demo: Demo) -> None:
    """A flow with several active runs (``max_active_runs``) may finish newer runs while an older one works:
    the retention drops nothing of a run still running, and its detail once it has finished and aged out."""
    running = f"{SHOP_FLOW}:still-running"
    runs.begin(demo.store, running, SHOP_FLOW, DEMO_START, DEMO_START, dry_run=False)
    left = [{"key": f"C{n}", "source_ts": DEMO_START, "payload": "{}", "check_name": None} for n in range(3)]
    staging.stage(demo.store, running, "customer", left)
    demo.config.flows[SHOP_FLOW].retention = RetentionConfig(results_runs=1)
    demo.run(SHOP_FLOW, 0)
    demo.run(SHOP_FLOW, 1)
    assert _per_run(demo, staged_rows) == {running: 3}, "two newer runs finished, the running one keeps its records"
    runs.finish(demo.store, running, "failed", None)
    demo.run(SHOP_FLOW, 2)
    assert _per_run(demo, staged_rows) == {}, "finished, then aged out"


def test_a_sync_task_run_again_alone_after_its_run_finished_refuses_and_keeps_the_results(demo: Demo) -> None:
    report = demo.run(SHOP_FLOW, 0)
    before = _per_run(demo, results)
    job = EntityJob(demo.config, demo.store, SHOP_FLOW, "customer", report["run_id"])
    extracted = report["entities"]["customer"]["extracted"]
    with pytest.raises(StagingDropped, match=f"run {job.run_id} finished and dropped its {extracted} staged customer"):
        sync_entity(job, demo.window(SHOP_FLOW, 0), dry_run=False)
    assert _per_run(demo, results) == before


def test_finalize_run_again_after_staging_went_keeps_keyless_records_held(demo: Demo) -> None:
    """Rows without a key are still seen by the run: a retried finalize reads them from the results."""
    report = demo.run(SHOP_FLOW, 0)
    keyless = [e for e in demo.exceptions(SHOP_FLOW, "customer") if e["key"].startswith(NULL_KEY_PREFIX)]
    assert keyless and all(e["status"] in queue.ACTIVE for e in keyless)
    again = finish_run(demo.config, demo.store, SHOP_FLOW, report["run_id"])
    assert again["entities"] == report["entities"]
    assert all(demo.exception(SHOP_FLOW, "customer", e["key"])["status"] in queue.ACTIVE for e in keyless)
