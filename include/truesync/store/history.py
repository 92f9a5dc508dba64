"""The path of one record through the store: every run that saw it, its ledger entry, the values
the flow overwrote in its target, and its exceptions (``docs/operating.md``, "Following one record").

Each read is by the record's flow, entity and key, on indexes made for it (``0004_dashboard``),
so a record's path costs the same in a store of one run or of a million results.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from truesync.store.core import Store
from truesync.store.schema import audit, exceptions, ledger, results, runs

RUN_COLUMNS = ("run_id", "kind", "dry_run", "status", "window_start", "window_end", "started_at")
RESULT_COLUMNS = ("class", "outcome", "overdue", "quiet", "check_name", "field", "reason", "value", "code_versions")


def record_runs(store: Store, flow: str, entity: str, key: str) -> list[dict[str, Any]]:
    """Every run of the flow that classified the record, oldest first, with what it decided."""
    query = (
        select(*(runs.c[c] for c in RUN_COLUMNS), *(results.c[c] for c in RESULT_COLUMNS))
        .join(runs, runs.c.run_id == results.c.run_id)
        .where(runs.c.flow == flow, results.c.entity == entity, results.c.key == key)
        .order_by(runs.c.started_at, runs.c.run_id)
    )
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def ledger_entry(store: Store, flow: str, entity: str, key: str) -> dict[str, Any] | None:
    """What the last sync saw and wrote for the record, or None if it was never synced."""
    query = select(ledger).where(ledger.c.flow == flow, ledger.c.entity == entity, ledger.c.key == key)
    with store.engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return {k: v for k, v in row.items() if k not in ("flow", "entity", "key")} if row else None


def overwrites(store: Store, flow: str, entity: str, key: str) -> list[dict[str, Any]]:
    """The target values the flow overwrote to restore its owner's, oldest first (the audit trail)."""
    query = (
        select(audit.c.run_id, audit.c.field, audit.c.overwritten_value, audit.c.restored_value, audit.c.at)
        .where(audit.c.flow == flow, audit.c.entity == entity, audit.c.key == key)
        .order_by(audit.c.at, audit.c.id)
    )
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def record_exceptions(store: Store, flow: str, entity: str, key: str) -> list[dict[str, Any]]:
    """The record's entry in the exception queue, open or decided (one per record, or none)."""
    query = select(exceptions).where(exceptions.c.flow == flow, exceptions.c.entity == entity, exceptions.c.key == key)
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
