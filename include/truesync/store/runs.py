"""Runs, their per-entity counts, watermarks and the audit trail of overwritten values."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from truesync.store.core import Store, utcnow
from truesync.store.schema import COUNT_COLUMNS, audit, run_entities, runs, watermarks
from truesync.support.bulk import Rows, insert, upsert


class RunNotFound(LookupError):
    pass


def begin(
    store: Store, run_id: str, flow: str, start: datetime, end: datetime, dry_run: bool, kind: str = "sync"
) -> None:
    """Register (or reset, when a run is cleared and re-run) a run, its window and its kind (sync or compare)."""
    row = {
        "kind": kind,
        "run_id": run_id,
        "flow": flow,
        "window_start": start,
        "window_end": end,
        "status": "running",
        "dry_run": dry_run,
        "started_at": utcnow(),
        "finished_at": None,
        "report": None,
    }
    with store.engine.begin() as conn:
        upsert(conn, runs, [row], ("run_id",), [c for c in row if c != "run_id"])


def get(store: Store, run_id: str) -> dict[str, Any]:
    with store.engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
    if row is None:
        raise RunNotFound(f"no run '{run_id}'")
    return dict(row)


def latest(store: Store, flow: str | None = None, limit: int = 1, finished: bool = False) -> list[dict[str, Any]]:
    """The newest runs first; ``finished`` leaves out runs still in progress (they have no report yet)."""
    query = select(runs).order_by(runs.c.started_at.desc()).limit(limit)
    if flow:
        query = query.where(runs.c.flow == flow)
    if finished:
        query = query.where(runs.c.report.is_not(None))
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def older_than(store: Store, flow: str, keep: int) -> list[str]:
    """Run ids of the flow's runs beyond its ``keep`` newest (by start), but for runs still running: a flow
    allowed several active runs (``max_active_runs``) may finish newer ones while an older one works."""
    query = select(runs.c.run_id, runs.c.status).where(runs.c.flow == flow)
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(runs.c.started_at.desc()).offset(keep)).all()
    return [run_id for run_id, status in rows if status != "running"]


def flows(store: Store) -> list[str]:
    """Every flow that has runs in the store."""
    with store.engine.connect() as conn:
        return list(conn.execute(select(runs.c.flow).distinct().order_by(runs.c.flow)).scalars())


def record_counts(store: Store, run_id: str, entity: str, part: str, counts: dict[str, Any]) -> None:
    """Store the counts one step produced for an entity (``extract``, a sync partition, ``final``).

    Steps write their own rows, so mapped sync tasks never contend for one row; the run's
    numbers for an entity are the sum over its parts.
    """
    row = {"run_id": run_id, "entity": entity, "part": part, **{c: int(counts.get(c, 0)) for c in COUNT_COLUMNS}}
    for seconds in ("extract_seconds", "sync_seconds", "load_seconds"):
        row[seconds] = float(counts.get(seconds, 0.0))
    with store.engine.begin() as conn:
        keys = ("run_id", "entity", "part")
        upsert(conn, run_entities, [row], keys, [c for c in row if c not in keys])


def entity_counts(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    """Per entity, every count and duration summed over the parts of the run."""
    summed = [c for c in run_entities.c if c.name not in ("run_id", "entity", "part")]
    query = (
        select(run_entities.c.entity, *(func.sum(c).label(c.name) for c in summed))
        .where(run_entities.c.run_id == run_id)
        .group_by(run_entities.c.entity)
    )
    with store.engine.connect() as conn:
        return {r["entity"]: dict(r) for r in conn.execute(query).mappings()}


def staged_count(store: Store, run_id: str, entity: str) -> int:
    """How many records the run's extract (or a compare's scan) staged for the entity: those it
    extracted, less those a compare found in sync and never staged."""
    part = run_entities.c.part.in_(("extract", "compare"))
    query = select(func.sum(run_entities.c.extracted - run_entities.c.unchanged)).where(
        run_entities.c.run_id == run_id, run_entities.c.entity == entity, part
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def finish(store: Store, run_id: str, status: str, report: dict[str, Any] | None) -> None:
    stmt = (
        update(runs)
        .where(runs.c.run_id == run_id)
        .values(status=status, finished_at=utcnow(), report=json.dumps(report, default=str) if report else None)
    )
    with store.engine.begin() as conn:
        conn.execute(stmt)


def watermark(store: Store, flow: str) -> datetime | None:
    with store.engine.connect() as conn:
        return conn.execute(select(watermarks.c.committed_until).where(watermarks.c.flow == flow)).scalar()


def advance_watermark(store: Store, flow: str, until: datetime, run_id: str) -> datetime:
    """Move the flow's watermark forward to ``until``; never backwards (old backfills)."""
    current = watermark(store, flow)
    new = until if current is None else max(current, until)
    row = {"flow": flow, "committed_until": new, "run_id": run_id, "updated_at": utcnow()}
    with store.engine.begin() as conn:
        upsert(conn, watermarks, [row], ("flow",), ["committed_until", "run_id", "updated_at"])
    return new


def add_audit(store: Store, rows: Rows) -> None:
    """Values a write replaced: run, flow, entity, key, field, overwritten and restored value, time."""
    if len(rows):
        with store.engine.begin() as conn:
            insert(conn, audit, rows)
