"""Bounded reads behind the status board: each flow's newest runs, their counts per entity, open
exceptions per flow and entity, and the watermarks.

A board covers every flow at once, so each read here is one query for all flows (a window
function picks each flow's newest runs; exceptions are counted in the database), never one
query per flow or a walk over the queue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from truesync.store.core import Store
from truesync.store.queue import ACTIVE
from truesync.store.schema import COUNT_COLUMNS, exceptions, run_entities, runs, watermarks

RUN_FIELDS = ("run_id", "flow", "kind", "status", "dry_run", "window_start", "window_end", "started_at", "finished_at")


def newest_runs(store: Store, flows: Sequence[str], per_flow: int, kind: str) -> dict[str, list[dict[str, Any]]]:
    """Per flow, its ``per_flow`` newest runs of ``kind`` that wrote (dry runs left out), newest first."""
    ranked = (
        select(
            *(runs.c[c] for c in RUN_FIELDS),
            func.row_number().over(partition_by=runs.c.flow, order_by=runs.c.started_at.desc()).label("rank"),
        )
        .where(runs.c.flow.in_(list(flows)), runs.c.kind == kind, runs.c.dry_run.is_(False))
        .subquery()
    )
    query = (
        select(*(ranked.c[c] for c in RUN_FIELDS))
        .where(ranked.c.rank <= per_flow)
        .order_by(ranked.c.flow, ranked.c.started_at.desc())
    )
    found: dict[str, list[dict[str, Any]]] = {flow: [] for flow in flows}
    with store.engine.connect() as conn:
        for row in conn.execute(query).mappings():
            found[row["flow"]].append(dict(row))
    return found


def run_entity_counts(store: Store, run_ids: Sequence[str]) -> dict[tuple[str, str], dict[str, int]]:
    """(run id, entity) -> every count of that entity in that run, summed over its parts."""
    if not run_ids:
        return {}
    query = (
        select(
            run_entities.c.run_id,
            run_entities.c.entity,
            *(func.sum(run_entities.c[c]).label(c) for c in COUNT_COLUMNS),
        )
        .where(run_entities.c.run_id.in_(list(run_ids)))
        .group_by(run_entities.c.run_id, run_entities.c.entity)
    )
    with store.engine.connect() as conn:
        return {
            (r["run_id"], r["entity"]): {c: int(r[c] or 0) for c in COUNT_COLUMNS}
            for r in conn.execute(query).mappings()
        }


def open_exceptions(store: Store) -> dict[tuple[str, str], int]:
    """(flow, entity) -> how many exceptions are open or waiting to be retried."""
    query = (
        select(exceptions.c.flow, exceptions.c.entity, func.count().label("n"))
        .where(exceptions.c.status.in_(ACTIVE))
        .group_by(exceptions.c.flow, exceptions.c.entity)
    )
    with store.engine.connect() as conn:
        return {(r.flow, r.entity): int(r.n) for r in conn.execute(query)}


def committed(store: Store) -> dict[str, datetime]:
    """Flow -> the end of the last window it committed (its watermark)."""
    with store.engine.connect() as conn:
        return {
            r.flow: r.committed_until for r in conn.execute(select(watermarks.c.flow, watermarks.c.committed_until))
        }


def reports(store: Store, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Run id -> its JSON report, for the finished runs among ``run_ids``."""
    if not run_ids:
        return {}
    query = select(runs.c.run_id, runs.c.report).where(runs.c.run_id.in_(list(run_ids)), runs.c.report.is_not(None))
    with store.engine.connect() as conn:
        return {r.run_id: json.loads(r.report) for r in conn.execute(query)}
