"""Staging: the records a run extracted, kept in the store so tasks never pass data via XCom.

Beside them, ``ts_result`` keeps the class and outcome each record got, which is what the
run report, the exception examples and the ground-truth tests read back.

A staged record's payload is its canonical record as a JSON object of text values. It is
written and read with msgspec (a dependency of Airflow's), which does both several times
faster than the standard ``json`` module: every record of a delta passes through it twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pandas as pd
from sqlalchemy import delete, func, select

from truesync.store.core import Store, row_pages
from truesync.store.schema import results, staging
from truesync.store.statistics import refresh
from truesync.support.bulk import Rows, insert, select_by_keys, upsert_mostly_new, with_constants
from truesync.support.frames import from_rows

STAGED_COLUMNS = ("source_ts", "payload", "check_name", "field", "reason", "value")
_ENCODER, _DECODER = msgspec.json.Encoder(), msgspec.json.Decoder()


def payloads(records: list[dict[str, str | None]]) -> list[str]:
    """Canonical records as JSON payloads, one per record.

    Text that is not valid Unicode (a lone surrogate, which a JSON source can send) cannot be
    UTF-8 for msgspec; such a record is spelled by ``json`` with escapes, as a JSON text allows.
    """
    return [_payload(record) for record in records]


def _payload(record: dict[str, str | None]) -> str:
    try:
        return _ENCODER.encode(record).decode()
    except UnicodeEncodeError:
        return json.dumps(record)


def parse_payloads(texts: list[str], index: pd.Index) -> pd.DataFrame:
    """Payloads back as a frame of text objects (``None`` for null), one column per field, on ``index``.

    msgspec refuses an escaped lone surrogate; a chunk holding one is read by ``json``.
    """
    joined = "[" + ",".join(texts) + "]"
    try:
        parsed = _DECODER.decode(joined)
    except msgspec.DecodeError:
        parsed = json.loads(joined)
    names = list(dict.fromkeys(name for record in parsed for name in record))
    columns = {name: [record.get(name) for record in parsed] for name in names}
    return pd.DataFrame(columns, index=index, dtype=object)


def stage(store: Store, run_id: str, entity: str, rows: Rows) -> int:
    """Upsert extracted rows; a later chunk (newer cursor) replaces an earlier one for a key.

    A run's staging starts empty, so its keys are nearly always new (``upsert_mostly_new``).
    """
    with store.engine.begin() as conn:
        return upsert_mostly_new(
            conn,
            staging,
            with_constants(rows, run_id=run_id, entity=entity),
            ("run_id", "entity", "key"),
            STAGED_COLUMNS,
        )


@dataclass(frozen=True)
class Partition:
    """A half-open key range ``[lo, hi)`` of one entity's staged records (None: unbounded)."""

    index: int
    lo: str | None = None
    hi: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "lo": self.lo, "hi": self.hi}

    @property
    def name(self) -> str:
        return f"p{self.index:04d}"


EVERYTHING = Partition(0)


def partitions(store: Store, run_id: str, entity: str, size: int) -> list[Partition]:
    """Split an entity's staged records into key ranges of about ``size`` records each."""
    bounds: list[str] = []
    base = select(staging.c.key).where(staging.c.run_id == run_id, staging.c.entity == entity)
    with store.engine.connect() as conn:
        while True:
            query = base if not bounds else base.where(staging.c.key >= bounds[-1])
            nxt = conn.execute(query.order_by(staging.c.key).offset(size).limit(1)).scalar()
            if nxt is None:
                break
            bounds.append(nxt)
    edges: list[str | None] = [None, *bounds, None]
    return [Partition(i, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def _in_partition(statement: Any, part: Partition, key: Any = staging.c.key) -> Any:
    """Restrict a select or delete to the partition's key range on ``key``."""
    if part.lo is not None:
        statement = statement.where(key >= part.lo)
    if part.hi is not None:
        statement = statement.where(key < part.hi)
    return statement


def staged_chunks(
    store: Store, run_id: str, entity: str, size: int, part: Partition = EVERYTHING
) -> Iterator[pd.DataFrame]:
    """Staged rows of a partition in key order, ``size`` at a time (keyset pagination on the key)."""
    last: str | None = None
    base = _in_partition(select(staging).where(staging.c.run_id == run_id, staging.c.entity == entity), part)
    while True:
        query = base if last is None else base.where(staging.c.key > last)
        with store.engine.connect() as conn:
            result = conn.execute(query.order_by(staging.c.key).limit(size))
            frame = from_rows(result.all(), list(result.keys()))
        if frame.empty:
            return
        last = frame["key"].iloc[-1]
        yield frame


def count(store: Store, run_id: str, entity: str) -> int:
    query = select(func.count()).select_from(staging).where(staging.c.run_id == run_id, staging.c.entity == entity)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def clear_results(store: Store, run_id: str, entity: str, part: Partition = EVERYTHING) -> None:
    """Forget a partition's results in a run, so a retried sync task starts clean."""
    stmt = _in_partition(
        delete(results).where(results.c.run_id == run_id, results.c.entity == entity), part, results.c.key
    )
    with store.engine.begin() as conn:
        conn.execute(stmt)


def keys_with_prefix(store: Store, run_id: str, entity: str, prefix: str) -> set[str]:
    """Keys with a result in the run that start with ``prefix`` (the names given to rows without a key).

    Read from the results, which outlive the staged rows: a retried finalize finds them still.
    """
    query = select(results.c.key).where(
        results.c.run_id == run_id, results.c.entity == entity, results.c.key.startswith(prefix, autoescape=True)
    )
    with store.engine.connect() as conn:
        return set(conn.execute(query).scalars())


def record_results(store: Store, run_id: str, entity: str, rows: Rows, code_versions: str | None = None) -> None:
    """Each record's class, outcome, overdue flag and failing check, in their own narrow table, with the
    code tables that translated it.

    Inserting small rows here is much cheaper than rewriting the staged rows with their payload.
    """
    if len(rows):
        with store.engine.begin() as conn:
            insert(conn, results, with_constants(rows, run_id=run_id, entity=entity, code_versions=code_versions))
        refresh(store, results, len(rows))


def outcomes(store: Store, run_id: str, entity: str, keys: list[str]) -> dict[str, str]:
    """Key -> outcome of the given keys in this run so far (parents synced earlier in the run)."""
    query = select(results.c.key, results.c.outcome).where(results.c.run_id == run_id, results.c.entity == entity)
    with store.engine.connect() as conn:
        return dict(select_by_keys(conn, query, results.c.key, keys))


def written(
    store: Store, run_id: str, entity: str, size: int, outcomes: tuple[str, ...] = ("created", "updated")
) -> Iterator[dict[str, str]]:
    """Key -> outcome of the records the run wrote with one of ``outcomes``, ``size`` at a time in key order."""
    query = select(results.c.key, results.c.outcome).where(
        results.c.run_id == run_id, results.c.entity == entity, results.c.outcome.in_(outcomes)
    )
    for rows in row_pages(store, query, results.c.key, size):
        yield dict(rows)


def run_results(store: Store, run_id: str, entity: str | None = None) -> pd.DataFrame:
    """Per-record results of a run (entity, key, class, outcome, overdue, check, field, reason)."""
    cols = [
        results.c[c] for c in ("entity", "key", "class", "outcome", "overdue", "check_name", "field", "reason", "value")
    ]
    query = select(*cols).where(results.c.run_id == run_id)
    if entity:
        query = query.where(results.c.entity == entity)
    with store.engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).all(), columns=[c.name for c in cols])


def clear(store: Store, run_id: str, entity: str) -> None:
    """Forget a run's staged rows for an entity, so a retried extract starts clean."""
    with store.engine.begin() as conn:
        conn.execute(delete(staging).where(staging.c.run_id == run_id, staging.c.entity == entity))


def is_dropped(store: Store, run_id: str, entity: str, staged: int) -> bool:
    """Whether a run that staged ``staged`` records of the entity holds none of them any more."""
    if staged == 0:
        return False
    query = select(staging.c.key).where(staging.c.run_id == run_id, staging.c.entity == entity).limit(1)
    with store.engine.connect() as conn:
        return conn.execute(query).first() is None


def drop_run(store: Store, run_id: str) -> int:
    """Drop every staged row of a finished run; returns how many."""
    with store.engine.begin() as conn:
        return conn.execute(delete(staging).where(staging.c.run_id == run_id)).rowcount
