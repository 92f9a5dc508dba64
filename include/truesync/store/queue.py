"""The exception queue: records that could not or must not be synced automatically.

One row per flow, entity and key. A record that fails again is the same exception seen
again (attempts grow), never a duplicate; once a later run syncs it, it resolves itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import bindparam, select, update

from truesync.store.core import Store, key_pages, utcnow
from truesync.store.schema import exceptions
from truesync.support.bulk import KEYS_PER_IN, select_by_keys, upsert

ACTIVE = ("open", "retrying")
STATUSES = ("open", "retrying", "resolved", "ignored")


class ExceptionNotFound(LookupError):
    pass


def active_ids(store: Store, flow: str, entity: str, keys: list[str]) -> dict[str, int]:
    """Key -> exception id for the given keys that are open or retrying.

    The entity's active exceptions are read whole when there are no more of them than keys
    (the usual case: a short queue against a chunk of tens of thousands), else looked up by key.
    """
    if not keys:
        return {}
    query = select(exceptions.c.key, exceptions.c.id).where(
        exceptions.c.flow == flow, exceptions.c.entity == entity, exceptions.c.status.in_(ACTIVE)
    )
    with store.engine.connect() as conn:
        queue = conn.execute(query.limit(len(keys) + 1)).all()
        if len(queue) > len(keys):
            return dict(select_by_keys(conn, query, exceptions.c.key, keys))
    wanted = set(keys)
    return {key: ident for key, ident in queue if key in wanted}


def active_keys(store: Store, flow: str, entity: str, size: int) -> Iterator[list[str]]:
    """Keys of active exceptions, ``size`` at a time, for retrying them on every run."""
    query = select(exceptions.c.key).where(
        exceptions.c.flow == flow, exceptions.c.entity == entity, exceptions.c.status.in_(ACTIVE)
    )
    return key_pages(store, query, exceptions.c.key, size)


def held_for_codes(store: Store, flow: str, entity: str, fields: list[str], size: int) -> Iterator[list[str]]:
    """Keys of active exceptions held for an unknown code in one of ``fields``, ``size`` at a time."""
    query = select(exceptions.c.key).where(
        exceptions.c.flow == flow,
        exceptions.c.entity == entity,
        exceptions.c.status.in_(ACTIVE),
        exceptions.c.check_name == "known_code",
        exceptions.c.field.in_(fields),
    )
    return key_pages(store, query, exceptions.c.key, size)


def quarantine(store: Store, flow: str, entity: str, run_id: str, rows: list[dict[str, Any]]) -> int:
    """Add or refresh exceptions; returns how many were newly opened (or reopened).

    ``rows`` carry key, class, check_name, field, reason and payload. An ignored
    exception stays ignored: a person decided so.
    """
    if not rows:
        return 0
    now = utcnow()
    keys = [r["key"] for r in rows]
    with store.engine.begin() as conn:
        known = select(exceptions.c.key, exceptions.c.status).where(
            exceptions.c.flow == flow, exceptions.c.entity == entity
        )
        existing = {row.key: row for row in select_by_keys(conn, known, exceptions.c.key, keys)}
        fresh = [_new_row(flow, entity, run_id, now, r) for r in rows if r["key"] not in existing]
        # Insert-or-ignore: a concurrent run of the same flow (a backfill beside the scheduled
        # run) may have opened the same exception a moment ago; it stays one exception.
        upsert(conn, exceptions, fresh, ("flow", "entity", "key"), [])
        again = [_seen_again(run_id, now, r, existing[r["key"]].status) for r in rows if r["key"] in existing]
        if again:
            conn.execute(_refresh_statement(flow, entity), again)
    reopened = sum(1 for r in rows if r["key"] in existing and existing[r["key"]].status == "resolved")
    return len(fresh) + reopened


def _new_row(flow: str, entity: str, run_id: str, now: Any, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "flow": flow,
        "entity": entity,
        "key": row["key"],
        "class": row["class"],
        "check_name": row["check_name"],
        "field": row.get("field"),
        "reason": row["reason"],
        "payload": row["payload"],
        "first_seen": now,
        "last_seen": now,
        "attempts": 1,
        "status": "open",
        "run_id": run_id,
    }


def _seen_again(run_id: str, now: Any, row: dict[str, Any], status: str) -> dict[str, Any]:
    new_status = {"open": "retrying", "retrying": "retrying", "resolved": "open"}.get(status, status)
    return {
        "b_key": row["key"],
        "b_class": row["class"],
        "b_check": row["check_name"],
        "b_field": row.get("field"),
        "b_reason": row["reason"],
        "b_payload": row["payload"],
        "b_now": now,
        "b_status": new_status,
        "b_run": run_id,
    }


def _refresh_statement(flow: str, entity: str) -> Any:
    return (
        update(exceptions)
        .where(exceptions.c.flow == flow, exceptions.c.entity == entity, exceptions.c.key == bindparam("b_key"))
        .values(
            {
                "class": bindparam("b_class"),
                "check_name": bindparam("b_check"),
                "field": bindparam("b_field"),
                "reason": bindparam("b_reason"),
                "payload": bindparam("b_payload"),
                "last_seen": bindparam("b_now"),
                "attempts": exceptions.c.attempts + 1,
                "status": bindparam("b_status"),
                "run_id": bindparam("b_run"),
            }
        )
    )


def resolve_synced(store: Store, flow: str, entity: str, run_id: str, keys: list[str]) -> int:
    """Resolve active exceptions whose record this run synced: their cause is gone.

    The active ones among ``keys`` are found by one key lookup first; the update then names
    only them (usually none), not the chunk's tens of thousands of keys.
    """
    ids = list(active_ids(store, flow, entity, keys).values()) if keys else []
    if not ids:
        return 0
    resolved = (
        update(exceptions)
        .where(exceptions.c.status.in_(ACTIVE))
        .values(status="resolved", note=f"synced by run {run_id}", last_seen=utcnow(), run_id=run_id)
    )
    with store.engine.begin() as conn:
        return sum(
            conn.execute(resolved.where(exceptions.c.id.in_(ids[start : start + KEYS_PER_IN]))).rowcount
            for start in range(0, len(ids), KEYS_PER_IN)
        )


def resolve_vanished(store: Store, flow: str, entity: str, run_id: str, prefix: str, seen: set[str]) -> int:
    """Resolve active exceptions under ``prefix`` whose record this run no longer saw.

    Rows without a key are named by a hash of their content; once such a row is fixed (it
    got a key) or removed, no run sees that name again, so its exception is resolved here.
    """
    query = select(exceptions.c.key).where(
        exceptions.c.flow == flow,
        exceptions.c.entity == entity,
        exceptions.c.status.in_(ACTIVE),
        exceptions.c.key.startswith(prefix, autoescape=True),
    )
    with store.engine.begin() as conn:
        gone = [key for key in conn.execute(query).scalars() if key not in seen]
        if not gone:
            return 0
        stmt = (
            update(exceptions)
            .where(exceptions.c.flow == flow, exceptions.c.entity == entity, exceptions.c.key.in_(gone))
            .values(status="resolved", note=f"row no longer seen without a key in run {run_id}", run_id=run_id)
        )
        return conn.execute(stmt).rowcount


def list_exceptions(store: Store, **filters: str | None) -> list[dict[str, Any]]:
    """Exceptions matching the given column filters (flow, entity, class, status), newest first."""
    query = select(exceptions).order_by(exceptions.c.last_seen.desc(), exceptions.c.id.desc())
    for column, value in filters.items():
        if value:
            query = query.where(exceptions.c[column] == value)
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def get(store: Store, exception_id: int) -> dict[str, Any]:
    with store.engine.connect() as conn:
        row = conn.execute(select(exceptions).where(exceptions.c.id == exception_id)).mappings().first()
    if row is None:
        raise ExceptionNotFound(f"no exception with id {exception_id}")
    return dict(row)
