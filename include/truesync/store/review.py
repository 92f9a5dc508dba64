"""Bounded read queries for the pages people review: overdue records, ranked reasons, examples.

A run can hold a million per-record results, so every query here aggregates in the database
(GROUP BY) or stops early (LIMIT); nothing loads a whole run into memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from truesync.store.core import Store, row_pages
from truesync.store.schema import exceptions, results, runs


def class_outcomes(store: Store, run_id: str) -> dict[tuple[str, str, str], int]:
    """(entity, class, outcome) -> number of records: the cross-table behind the run report's counts."""
    query = (
        select(results.c.entity, results.c["class"], results.c.outcome, func.count().label("n"))
        .where(results.c.run_id == run_id)
        .group_by(results.c.entity, results.c["class"], results.c.outcome)
    )
    with store.engine.connect() as conn:
        return {(r.entity, r[1], r.outcome): int(r.n) for r in conn.execute(query)}


def overdue_records(store: Store, run_id: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` overdue records of a run (entity, key, class), in entity and key order."""
    query = (
        select(results.c.entity, results.c.key, results.c["class"].label("klass"))
        .where(results.c.run_id == run_id, results.c.overdue.is_(True))
        .order_by(results.c.entity, results.c.key)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def reason_groups(store: Store, run_id: str, limit: int) -> list[dict[str, Any]]:
    """Why records were held, grouped by entity, check and field, most frequent first."""
    count = func.count().label("count")
    query = (
        select(results.c.entity, results.c.check_name, results.c.field, count)
        .where(results.c.run_id == run_id, results.c.check_name.is_not(None))
        .group_by(results.c.entity, results.c.check_name, results.c.field)
        .order_by(count.desc(), results.c.entity, results.c.check_name)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def reason_examples(
    store: Store, run_id: str, entity: str, check_name: str, field: str | None, limit: int
) -> list[dict[str, Any]]:
    """A few held records of one reason group: key, reason text and the offending raw value."""
    same_field = results.c.field.is_(None) if field is None else results.c.field == field
    query = (
        select(results.c.key, results.c.reason, results.c.value)
        .where(results.c.run_id == run_id, results.c.entity == entity, results.c.check_name == check_name, same_field)
        .order_by(results.c.key)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def runs_before(store: Store, flow: str, started_at: datetime, limit: int, kind: str = "sync") -> list[dict[str, Any]]:
    """The ``limit`` runs of ``kind`` of a flow started before ``started_at``, newest first, with their reports."""
    query = (
        select(runs.c.run_id, runs.c.status, runs.c.dry_run, runs.c.started_at, runs.c.report)
        .where(runs.c.flow == flow, runs.c.started_at < started_at, runs.c.kind == kind)
        .order_by(runs.c.started_at.desc())
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def latest_attempt(store: Store, flow: str, dag_run_id: str) -> dict[str, Any] | None:
    """The newest truesync run of an Airflow DAG run: ``<flow>:<dag run id>``, or its ``#<n>`` re-runs."""
    run_id = f"{flow}:{dag_run_id}"
    query = (
        select(runs.c.run_id, runs.c.flow, runs.c.status)
        .where(
            runs.c.flow == flow, or_(runs.c.run_id == run_id, runs.c.run_id.startswith(f"{run_id}#", autoescape=True))
        )
        .order_by(runs.c.started_at.desc())
        .limit(1)
    )
    with store.engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def quiet_drift(store: Store, run_id: str, examples: int) -> dict[str, dict[str, Any]]:
    """Entity -> ``counts`` per class of the run's quiet records and up to ``examples`` of each class.

    An example is its key, class, outcome, and the check, field, reason and value that held it, if any.
    """
    quiet = (results.c.run_id == run_id) & results.c.quiet.is_(True)
    klass = results.c["class"]
    query = select(results.c.entity, klass, func.count()).where(quiet).group_by(results.c.entity, klass)
    drift: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for entity, name, n in conn.execute(query.order_by(results.c.entity, klass)).all():
            body = drift.setdefault(entity, {"counts": {}, "examples": []})
            body["counts"][name] = int(n)
            cols = [results.c.key, klass.label("class"), results.c.outcome, results.c.check_name, results.c.field,
                    results.c.reason, results.c.value]  # fmt: skip
            first = select(*cols).where(quiet, results.c.entity == entity, klass == name).order_by(results.c.key)
            body["examples"] += [dict(r) for r in conn.execute(first.limit(examples)).mappings()]
    return drift


def changes(store: Store, run_id: str, size: int) -> Iterator[list[Any]]:
    """(key, entity, class, outcome, quiet) of every record the run changes or holds, ``size`` a page in key order."""
    query = select(results.c.key, results.c.entity, results.c["class"], results.c.outcome, results.c.quiet).where(
        results.c.run_id == run_id, results.c.outcome != "unchanged"
    )
    return row_pages(store, query, results.c.key, size)


def new_codes(store: Store, flow: str, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """Entity -> the codes no code map knew in this run: field, code, records, and when the queue first saw one.

    Codes read from a source only: a canonical value a target has no code for is held as
    ``known_code`` too, without a value (no source code to add).
    """
    held = exceptions.c
    query = (
        select(
            results.c.entity,
            results.c.field,
            results.c.value,
            func.count().label("n"),
            func.min(held.first_seen).label("first_seen"),
        )  # fmt: skip
        .join(exceptions, (held.flow == flow) & (held.entity == results.c.entity) & (held.key == results.c.key))
        .where(results.c.run_id == run_id, results.c.check_name == "known_code", results.c.value.is_not(None))
        .group_by(results.c.entity, results.c.field, results.c.value)
        .order_by(results.c.entity, func.count().desc(), results.c.value)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            code = {"field": row.field, "code": row.value, "records": int(row.n), "first_seen": row.first_seen}
            found.setdefault(row.entity, []).append(code)
    return found
