"""Staging: the records a run extracted, kept in the store so tasks never pass data via XCom.

A run's staged rows also hold the class and outcome each record got, which is what the
run report, the exception examples and the ground-truth tests read back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
from sqlalchemy import bindparam, delete, func, select, update

from truesync.sqlutil import upsert
from truesync.store.core import Store
from truesync.store.schema import runs, staging

STAGED_COLUMNS = ("source_ts", "payload", "check_name", "field", "reason")


def stage(store: Store, run_id: str, entity: str, rows: list[dict[str, Any]]) -> int:
    """Upsert extracted rows; a later chunk (newer cursor) replaces an earlier one for a key."""
    records = [{"run_id": run_id, "entity": entity, **row} for row in rows]
    with store.engine.begin() as conn:
        return upsert(conn, staging, records, ("run_id", "entity", "key"), STAGED_COLUMNS)


def staged_chunks(store: Store, run_id: str, entity: str, size: int) -> Iterator[pd.DataFrame]:
    """Staged rows in key order, ``size`` at a time (keyset pagination on the key)."""
    last: str | None = None
    base = select(staging).where(staging.c.run_id == run_id, staging.c.entity == entity)
    while True:
        query = base if last is None else base.where(staging.c.key > last)
        with store.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(query.order_by(staging.c.key).limit(size)).mappings().all())
        if frame.empty:
            return
        last = frame["key"].iloc[-1]
        yield frame


def count(store: Store, run_id: str, entity: str) -> int:
    query = select(func.count()).select_from(staging).where(staging.c.run_id == run_id, staging.c.entity == entity)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def record_results(store: Store, run_id: str, entity: str, results: list[dict[str, Any]]) -> None:
    """Write back each staged record's class, outcome, overdue flag and failing check."""
    if not results:
        return
    stmt = (
        update(staging)
        .where(
            staging.c.run_id == bindparam("b_run"),
            staging.c.entity == bindparam("b_entity"),
            staging.c.key == bindparam("b_key"),
        )
        .values(
            {
                "class": bindparam("b_class"),
                "outcome": bindparam("b_outcome"),
                "overdue": bindparam("b_overdue"),
                "check_name": bindparam("b_check"),
                "field": bindparam("b_field"),
                "reason": bindparam("b_reason"),
            }
        )
    )
    params = [
        {
            "b_run": run_id,
            "b_entity": entity,
            "b_key": r["key"],
            "b_class": r["class"],
            "b_outcome": r["outcome"],
            "b_overdue": bool(r.get("overdue", False)),
            "b_check": r.get("check_name"),
            "b_field": r.get("field"),
            "b_reason": r.get("reason"),
        }
        for r in results
    ]
    with store.engine.begin() as conn:
        conn.execute(stmt, params)


def outcomes(store: Store, run_id: str, entity: str, keys: list[str]) -> dict[str, str]:
    """Key -> outcome of the given keys in this run so far (parents synced earlier in the run)."""
    query = select(staging.c.key, staging.c.outcome).where(
        staging.c.run_id == run_id, staging.c.entity == entity, staging.c.key.in_(keys), staging.c.outcome.is_not(None)
    )
    with store.engine.connect() as conn:
        return {row.key: row.outcome for row in conn.execute(query)}


def results(store: Store, run_id: str, entity: str | None = None) -> pd.DataFrame:
    """Per-record results of a run (key, entity, class, outcome, overdue, check, reason)."""
    cols = [staging.c[c] for c in ("entity", "key", "class", "outcome", "overdue", "check_name", "field", "reason")]
    query = select(*cols).where(staging.c.run_id == run_id)
    if entity:
        query = query.where(staging.c.entity == entity)
    with store.engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).mappings().all(), columns=[c.name for c in cols])


def clear(store: Store, run_id: str, entity: str) -> None:
    """Forget a run's staged rows for an entity, so a retried extract starts clean."""
    with store.engine.begin() as conn:
        conn.execute(delete(staging).where(staging.c.run_id == run_id, staging.c.entity == entity))


def purge_old_runs(store: Store, flow: str, keep: int) -> int:
    """Drop staged rows of all but the ``keep`` most recent runs of a flow."""
    query = select(runs.c.run_id).where(runs.c.flow == flow).order_by(runs.c.started_at.desc()).offset(keep)
    with store.engine.begin() as conn:
        old = list(conn.execute(query).scalars())
        if not old:
            return 0
        return conn.execute(delete(staging).where(staging.c.run_id.in_(old))).rowcount
