"""Retention: what the store drops of a flow's older runs (``docs/operating.md``, "What the store keeps").

A run's per-record detail (staged rows, results, a compare's decisions) and its check statistics
serve the run itself, then traces and examples for a while; the flow's
``retention.results_runs`` newest runs keep them. Every run's counts and report, the ledger,
the exception queue and the audit trail are the flow's state and history: never dropped here.
"""

from __future__ import annotations

from sqlalchemy import delete

from truesync.store.core import Store
from truesync.store.schema import checks, compare_diffs, results, staging

PER_RUN_DETAIL = (staging, results, compare_diffs, checks)


def drop_detail(store: Store, run_ids: list[str]) -> None:
    """Drop the per-run detail of the runs ``run_ids``."""
    with store.engine.begin() as conn:
        for table in PER_RUN_DETAIL:
            conn.execute(delete(table).where(table.c.run_id.in_(run_ids)))
