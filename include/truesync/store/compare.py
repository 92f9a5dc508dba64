"""Compare: the keys a full compare scanned on each side, and what it decided for each that differs.

Each system returns its rows in its own order (a REST listing by change time, a SQL table
in any order, collations that disagree), so neither side is merged in Python. Both are
written here, key, hash and change time (``ts_compare_key``, side ``S`` or ``T``), and one
walk by key over the store's own index joins them with the ledger, a page at a time:
memory stays bounded by the page, and the order is the store's on all three.
``ts_compare_diff`` keeps the decision for every key that is not simply in sync.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
from sqlalchemy import case, delete, false, func, select, true, update

from truesync.core.classify import OVERWRITTEN
from truesync.core.compare import ALWAYS_QUIET, PAGE_COLUMNS, SOURCE_SIDE_CLASSES
from truesync.store.core import Store, key_pages, row_pages
from truesync.store.schema import compare_diffs, compare_keys, ledger, results
from truesync.support.bulk import Rows, insert, upsert_mostly_new, with_constants
from truesync.support.frames import from_rows

SOURCE, TARGET = "S", "T"
_LEDGER = ("l_source_hash", "l_target_hash", "l_source_ts", "l_target_ts", "l_version")


def clear(store: Store, run_id: str, entity: str) -> None:
    """Forget what a compare scanned and decided for an entity, so a retried task starts clean."""
    with store.engine.begin() as conn:
        for table in (compare_keys, compare_diffs):
            conn.execute(delete(table).where(table.c.run_id == run_id, table.c.entity == entity))


def record_keys(store: Store, run_id: str, entity: str, side: str, rows: pd.DataFrame) -> int:
    """Store one side's ``key``, ``hash`` and ``ts``; a key read twice keeps its last reading."""
    with store.engine.begin() as conn:
        return upsert_mostly_new(
            conn,
            compare_keys,
            with_constants(rows, run_id=run_id, entity=entity, side=side),
            ("run_id", "entity", "key", "side"),
            ("hash", "ts"),
        )


def side_count(store: Store, run_id: str, entity: str, side: str) -> int:
    """How many keys one side holds."""
    k = compare_keys
    query = select(func.count()).where(k.c.run_id == run_id, k.c.entity == entity, k.c.side == side)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def joined_pages(store: Store, flow: str, run_id: str, entity: str, size: int) -> Iterator[pd.DataFrame]:
    """Every key of both sides and of the ledger, ``size`` keys of the sides a page, in key order.

    A page covers the key range since the previous page, so the ledger entries in that range
    come with it, those of keys neither side holds included; entries past the last key of
    the sides come last, in pages of their own. Columns: ``core.compare.PAGE_COLUMNS``.
    """
    last: str | None = None
    while True:
        sides = _sides(store, run_id, entity, last, size)
        high = sides.index[-1] if len(sides) == size else None
        entries = _ledger_range(store, flow, entity, last, high)
        yield sides.join(entries, how="outer").reindex(columns=list(PAGE_COLUMNS))
        if high is None:
            return
        last = high


def _sides(store: Store, run_id: str, entity: str, after: str | None, size: int) -> pd.DataFrame:
    k = compare_keys

    def of(side: str, column: Any) -> Any:
        return func.max(case((k.c.side == side, column)))

    query = (
        select(
            k.c.key,
            of(SOURCE, 1).label("s_seen"),
            of(SOURCE, k.c.hash).label("s_hash"),
            of(SOURCE, k.c.ts).label("s_ts"),
            of(TARGET, 1).label("t_seen"),
            of(TARGET, k.c.hash).label("t_hash"),
            of(TARGET, k.c.ts).label("t_ts"),
        )
        .where(k.c.run_id == run_id, k.c.entity == entity)
        .group_by(k.c.key)
        .order_by(k.c.key)
        .limit(size)
    )
    if after is not None:
        query = query.where(k.c.key > after)
    with store.engine.connect() as conn:
        result = conn.execute(query)
        return from_rows(result.all(), list(result.keys())).set_index("key")


def _ledger_range(store: Store, flow: str, entity: str, after: str | None, upto: str | None) -> pd.DataFrame:
    """Ledger entries with ``after < key <= upto`` (either bound open when None), read in pages."""
    query = select(
        ledger.c.key,
        ledger.c.source_hash.label("l_source_hash"),
        ledger.c.target_hash.label("l_target_hash"),
        ledger.c.source_ts.label("l_source_ts"),
        ledger.c.target_ts.label("l_target_ts"),
        ledger.c.mapping_version.label("l_version"),
    ).where(ledger.c.flow == flow, ledger.c.entity == entity)
    if after is not None:
        query = query.where(ledger.c.key > after)
    if upto is not None:
        query = query.where(ledger.c.key <= upto)
    rows = [row for page in row_pages(store, query, ledger.c.key, 50_000) for row in page]
    return from_rows(rows, ["key", *_LEDGER]).set_index("key")


def record_diffs(store: Store, run_id: str, entity: str, rows: Rows) -> None:
    """Store the decisions (``key``, ``action``, ``quiet_source``, ``quiet_target``) of keys that differ."""
    if len(rows):
        with store.engine.begin() as conn:
            insert(conn, compare_diffs, with_constants(rows, run_id=run_id, entity=entity))


def diff_keys(store: Store, run_id: str, entity: str, action: str, size: int) -> Iterator[list[str]]:
    """Keys given ``action``, ``size`` at a time in key order."""
    d = compare_diffs
    query = select(d.c.key).where(d.c.run_id == run_id, d.c.entity == entity, d.c.action == action)
    return key_pages(store, query, d.c.key, size)


def action_count(store: Store, run_id: str, entity: str, action: str) -> int:
    """How many keys were given ``action``."""
    d = compare_diffs
    query = select(func.count()).where(d.c.run_id == run_id, d.c.entity == entity, d.c.action == action)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def quiet_counts(store: Store, run_id: str) -> dict[str, int]:
    """Entity -> records of the run flagged quiet (after ``mark_quiet``)."""
    query = (
        select(results.c.entity, func.count())
        .where(results.c.run_id == run_id, results.c.quiet.is_(True))
        .group_by(results.c.entity)
    )
    with store.engine.connect() as conn:
        return {entity: int(n) for entity, n in conn.execute(query)}


def mark_quiet(store: Store, run_id: str) -> None:
    """Set each result's ``quiet`` flag from its class and the flags its key got when compared."""
    d, klass = compare_diffs, results.c["class"]
    flag = case(
        (klass.in_(SOURCE_SIDE_CLASSES), d.c.quiet_source),
        (klass == OVERWRITTEN, d.c.quiet_target),
        (klass.in_(ALWAYS_QUIET), true()),
        else_=false(),
    )
    found = (
        select(flag)
        .where(d.c.run_id == results.c.run_id, d.c.entity == results.c.entity, d.c.key == results.c.key)
        .scalar_subquery()
    )
    with store.engine.begin() as conn:
        conn.execute(update(results).where(results.c.run_id == run_id).values(quiet=func.coalesce(found, false())))


def purge(store: Store, run_id: str) -> None:
    """Drop the scanned keys of a finished compare: two rows per record, needed only while it runs."""
    with store.engine.begin() as conn:
        conn.execute(delete(compare_keys).where(compare_keys.c.run_id == run_id))
