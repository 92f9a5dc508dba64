"""Runs, their per-entity counts, watermarks and the audit trail of overwritten values."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from truesync.sqlutil import upsert
from truesync.store.core import Store, utcnow
from truesync.store.schema import COUNT_COLUMNS, audit, run_entities, runs, watermarks


class RunNotFound(LookupError):
    pass


def begin(store: Store, run_id: str, flow: str, start: datetime, end: datetime, dry_run: bool) -> None:
    """Register (or reset, when a run is cleared and re-run) a run and its window."""
    row = {
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


def latest(store: Store, flow: str | None = None, limit: int = 1) -> list[dict[str, Any]]:
    query = select(runs).order_by(runs.c.started_at.desc()).limit(limit)
    if flow:
        query = query.where(runs.c.flow == flow)
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def record_entity(store: Store, run_id: str, entity: str, counts: dict[str, Any]) -> None:
    """Store one entity's counts for a run (the numbers the conservation law checks)."""
    row = {"run_id": run_id, "entity": entity, **{c: int(counts.get(c, 0)) for c in COUNT_COLUMNS}}
    row["extract_seconds"] = float(counts.get("extract_seconds", 0.0))
    row["sync_seconds"] = float(counts.get("sync_seconds", 0.0))
    row["load_seconds"] = float(counts.get("load_seconds", 0.0))
    with store.engine.begin() as conn:
        upsert(conn, run_entities, [row], ("run_id", "entity"), [c for c in row if c not in ("run_id", "entity")])


def set_extract_seconds(store: Store, run_id: str, entity: str, extracted: int, seconds: float) -> None:
    row = {"run_id": run_id, "entity": entity, **dict.fromkeys(COUNT_COLUMNS, 0)}
    row.update(extracted=extracted, extract_seconds=seconds, sync_seconds=0.0, load_seconds=0.0)
    with store.engine.begin() as conn:
        upsert(conn, run_entities, [row], ("run_id", "entity"), ["extracted", "extract_seconds"])


def entity_counts(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    query = select(run_entities).where(run_entities.c.run_id == run_id)
    with store.engine.connect() as conn:
        return {r["entity"]: dict(r) for r in conn.execute(query).mappings()}


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


def add_audit(store: Store, rows: list[dict[str, Any]]) -> None:
    if rows:
        with store.engine.begin() as conn:
            conn.execute(audit.insert(), rows)


def audit_count(store: Store, run_id: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit).where(audit.c.run_id == run_id)).scalar() or 0)
