"""Compare: the keys a full compare scanned on each side, and what it decided for each that differs.

Each system returns its rows in its own order (a REST listing by change time, a SQL table
in any order, collations that disagree), so neither side is merged in Python. Both are
appended here, key, hash and change time (``ts_compare_key``, side ``S`` or ``T``, with the
number of the chunk it was read in), and the store's own database joins them with the
ledger: it refreshes the ledger entries of the records in sync in place (``refresh_ledger``)
and hands Python only the keys that differ (``differences``), streamed a page at a time, so
memory stays bounded by the page.
``ts_compare_diff`` keeps the decision for every key that is not simply in sync.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import closing
from typing import Any

import pandas as pd
from sqlalchemy import and_, case, delete, exists, false, func, literal, null, or_, select, true, union_all, update
from sqlalchemy.engine import Connection

from truesync.core.classify import OVERWRITTEN
from truesync.core.compare import ALWAYS_QUIET, PAGE_COLUMNS, SOURCE_SIDE_CLASSES
from truesync.store.core import Store, key_pages
from truesync.store.ledger import LEDGER_COLUMNS
from truesync.store.schema import compare_diffs, compare_keys, ledger, results
from truesync.support.bulk import Rows, copy_line, insert, insert_from_select, upsert_from_select, with_constants
from truesync.support.copy_stream import copy_in
from truesync.support.frames import from_rows

SOURCE, TARGET = "S", "T"
DIGEST_PREFIX = "md5:"  # a hash that is a system's digest of the compared columns, not ``side_hash`` (``unconfirmed``)


def clear(store: Store, run_id: str, entity: str) -> None:
    """Forget what a compare scanned and decided for an entity, so a retried task starts clean."""
    with store.engine.begin() as conn:
        for table in (compare_keys, compare_diffs):
            conn.execute(delete(table).where(table.c.run_id == run_id, table.c.entity == entity))


def record_keys(store: Store, run_id: str, entity: str, side: str, seq: int, rows: pd.DataFrame) -> int:
    """Append one side's ``key``, ``hash`` and ``ts`` as read in its chunk number ``seq``.

    Appended, never merged: a key read twice is settled once the side is read (``settle``).
    """
    with store.engine.begin() as conn:
        return insert(conn, compare_keys, with_constants(rows, run_id=run_id, entity=entity, side=side, seq=seq))


def copies_keys(store: Store) -> bool:
    """Whether ``copy_keys`` works: the store is on PostgreSQL."""
    return store.engine.dialect.name == "postgresql"


def copy_keys(store: Store, run_id: str, entity: str, side: str, seq: int, lines: Generator[bytes, None, None]) -> int:
    """Append one side's ``key``, ``ts`` and ``hash`` as ``COPY`` text ``lines`` of another PostgreSQL
    database (``support.copy_stream``), each given the run's constants; returns the keys appended.

    As ``record_keys``, but no row passes through Python: the keys must be canonical and storable as
    they come (``CopiesDigests``). ``lines`` is closed however the copy ends, so a copy the store's
    driver gives up stops the other database's ``COPY`` at once.
    """
    line_end = ("\t" + copy_line([run_id, entity, side, seq]) + "\n").encode()  # each line's constants
    tagged = (block.replace(b"\n", line_end) for block in lines)
    columns = ["key", "ts", "hash", "run_id", "entity", "side", "seq"]
    with closing(lines), store.engine.begin() as conn:
        return copy_in(conn, compare_keys, columns, tagged)


def settle(store: Store, run_id: str, entity: str, repeats: bool, since: int = 0) -> None:
    """Make the scanned keys ready to join: where a side may have returned a key twice (``repeats``),
    only its last reading (highest ``seq``) stays; on PostgreSQL the statistics are refreshed, since
    just after a bulk load it has none and would misjudge the joins.

    ``since`` is the first chunk number that may repeat an earlier one's key: the keys read again
    after scans that read each key once. Only those few readings are then looked up, not every
    reading against every other.
    """
    k, later = compare_keys, compare_keys.alias("later")
    with store.engine.begin() as conn:
        if repeats:
            read_again = exists().where(
                later.c.run_id == k.c.run_id,
                later.c.entity == k.c.entity,
                later.c.side == k.c.side,
                later.c.key == k.c.key,
                later.c.seq > k.c.seq,
                later.c.seq >= since,
            )
            conn.execute(delete(k).where(k.c.run_id == run_id, k.c.entity == entity, read_again))
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ANALYZE {k.name}")


def side_count(store: Store, run_id: str, entity: str, side: str) -> int:
    """How many keys one side holds."""
    k = compare_keys
    query = select(func.count()).where(k.c.run_id == run_id, k.c.entity == entity, k.c.side == side)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def unconfirmed(store: Store, flow: str, run_id: str, entity: str, version: str, size: int) -> Iterator[list[str]]:
    """Keys both sides hold as digests (``DIGEST_PREFIX``) that the ledger cannot confirm in sync,
    ``size`` a page, streamed in no particular order.

    A key is confirmed when both digests are equal (so both sides agree now) and its entry, made
    under mapping ``version``, says both sides were in sync (equal hashes) when the source showed the
    change time it shows now: the record is as the entry remembers it. The target's time is not
    asked, since a database may keep it coarser than the write time the entry holds. Every other key
    both sides hold must be read and hashed as a scan does, so it is compared and its ledger entry
    refreshed as without digests.
    """
    s, t = _scanned(run_id, entity)
    of_key = and_(ledger.c.flow == flow, ledger.c.entity == entity, ledger.c.key == s.c.key)
    doubt = or_(
        _unequal(s, t),
        ledger.c.key.is_(None),
        ledger.c.mapping_version != version,
        ledger.c.source_hash != ledger.c.target_hash,
        s.c.ts.is_distinct_from(ledger.c.source_ts),
    )
    query = select(s.c.key).select_from(s.join(t, _same_key(s, t)).outerjoin(ledger, of_key)).where(doubt)
    with store.engine.begin() as conn:
        _hash_joins(conn)
        for rows in conn.execution_options(yield_per=size).execute(query).partitions():
            yield [row[0] for row in rows]


def refresh_ledger(store: Store, flow: str, run_id: str, entity: str, entry: dict[str, Any]) -> int:
    """Write what both sides hold now into the ledger entry of every record in sync whose entry is
    missing, made under another mapping version (``entry["mapping_version"]``) or stale on either
    hash; returns how many. One statement in the store, so the records in sync, nearly all of a
    large compare, never travel to Python: a merge, or an append when the entity has no entry yet
    (a first compare). ``entry`` holds the constant columns (mapping version, run, time, code versions).
    A record confirmed by its digests (``unconfirmed``) is skipped: its entry holds what both sides hold.
    """
    s, t = _scanned(run_id, entity)
    of_key = and_(ledger.c.flow == flow, ledger.c.entity == entity, ledger.c.key == s.c.key)
    due = or_(
        ledger.c.key.is_(None),
        ledger.c.mapping_version.is_distinct_from(entry["mapping_version"]),
        ledger.c.source_hash.is_distinct_from(s.c.hash),
        ledger.c.target_hash.is_distinct_from(t.c.hash),
    )
    constants = {name: literal(value, ledger.c[name].type) for name, value in entry.items()}
    values = {"flow": literal(flow, ledger.c.flow.type), "entity": literal(entity, ledger.c.entity.type)}
    values |= {"key": s.c.key, "source_hash": s.c.hash, "target_hash": t.c.hash, "source_ts": s.c.ts}
    values |= {"target_ts": t.c.ts, **constants}
    query = (
        select(*(value.label(name) for name, value in values.items()))
        .select_from(s.join(t, _same_key(s, t)).outerjoin(ledger, of_key))
        .where(_equal(s, t), s.c.hash.not_like(DIGEST_PREFIX + "%"), due)
    )
    known = select(ledger.c.key).where(ledger.c.flow == flow, ledger.c.entity == entity).limit(1)
    with store.engine.begin() as conn:
        _hash_joins(conn)
        write = upsert_from_select if conn.execute(known).first() else insert_from_select
        return write(conn, ledger, query, ("flow", "entity", "key"), LEDGER_COLUMNS)


def differences(store: Store, flow: str, run_id: str, entity: str, size: int) -> Iterator[pd.DataFrame]:
    """Every key that is not simply in sync, ``size`` keys a page, indexed by key (``core.compare.PAGE_COLUMNS``):
    keys the sides hold with different hashes (or a null one), keys one side holds, and ledger
    entries of keys neither side holds. Read in one streamed query, in no particular order: on
    PostgreSQL one full join of both sides and the ledger (each read once, hashed), elsewhere a
    union of three outer joins (SQLite has full joins only since 3.39).
    """
    s, t = _scanned(run_id, entity)
    read = _full_join if store.engine.dialect.name == "postgresql" else _outer_joins
    columns = ["key", *PAGE_COLUMNS]
    with store.engine.begin() as conn:
        _hash_joins(conn)
        result = conn.execution_options(yield_per=size).execute(read(s, t, flow, entity, run_id))
        for rows in result.partitions():
            yield from_rows(rows, columns).set_index("key")


def _full_join(s: Any, t: Any, flow: str, entity: str, run_id: str) -> Any:
    """``differences`` as one query: both sides and the entity's ledger, fully joined by key."""
    entries = select(ledger).where(ledger.c.flow == flow, ledger.c.entity == entity).subquery("l")
    either = func.coalesce(s.c.key, t.c.key)
    joined = s.join(t, _same_key(s, t), full=True).join(entries, entries.c.key == either, full=True)
    seen = [case((side.c.key.is_not(None), 1)) for side in (s, t)]
    return (
        select(func.coalesce(either, entries.c.key).label("key"), *_sides(s, t, *seen), *_ledger_entry(entries))
        .select_from(joined)
        .where(_unequal(s, t))
    )


def _outer_joins(s: Any, t: Any, flow: str, entity: str, run_id: str) -> Any:
    """``differences`` as a union: keys the source holds, keys only the target holds, entries neither holds."""
    in_ledger = and_(ledger.c.flow == flow, ledger.c.entity == entity)
    entry = _ledger_entry(ledger)
    absent = [null().label(f"{p}_{c}") for p in "st" for c in ("seen", "hash", "ts")]
    source_side = (
        select(s.c.key, *_sides(s, t, literal(1), case((t.c.key.is_not(None), 1))), *entry)
        .select_from(s.outerjoin(t, _same_key(s, t)).outerjoin(ledger, and_(in_ledger, ledger.c.key == s.c.key)))
        .where(_unequal(s, t))
    )
    target_only = (
        select(t.c.key, *absent[:3], literal(1).label("t_seen"), t.c.hash.label("t_hash"), t.c.ts.label("t_ts"))
        .add_columns(*entry)
        .select_from(t.outerjoin(ledger, and_(in_ledger, ledger.c.key == t.c.key)))
        .where(~exists().where(_same_key(t, s)))
    )
    k = compare_keys
    scanned = exists().where(k.c.run_id == run_id, k.c.entity == entity, k.c.key == ledger.c.key)
    ledger_only = select(ledger.c.key, *absent, *entry).where(in_ledger, ~scanned)
    return union_all(source_side, target_only, ledger_only)


def _sides(s: Any, t: Any, s_seen: Any, t_seen: Any) -> list[Any]:
    """Both sides' columns as a page names them (``s_*``, ``t_*`` of ``core.compare.PAGE_COLUMNS``)."""
    return [
        s_seen.label("s_seen"),
        s.c.hash.label("s_hash"),
        s.c.ts.label("s_ts"),
        t_seen.label("t_seen"),
        t.c.hash.label("t_hash"),
        t.c.ts.label("t_ts"),
    ]


def _unequal(s: Any, t: Any) -> Any:
    """Not simply in sync: a side lacks the key, could not read it (a null hash), or the hashes differ."""
    return or_(s.c.hash.is_(None), t.c.hash.is_(None), s.c.hash != t.c.hash)


def _hash_joins(conn: Connection) -> None:
    """On PostgreSQL, join by hashing for the rest of the transaction, never by a nested loop.

    The planner takes the two sides' hashes for independent columns, so it expects about one key
    to have equal hashes where nearly all do, and would look each of them up in the ledger's
    index, one probe per record: more than twice as slow on 1.5M records as hashing both.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL enable_nestloop = off")


def _ledger_entry(entries: Any) -> list[Any]:
    """The ledger entry's columns as a page names them (``l_*`` of ``core.compare.PAGE_COLUMNS``)."""
    c = entries.c
    return [
        c.source_hash.label("l_source_hash"),
        c.target_hash.label("l_target_hash"),
        c.source_ts.label("l_source_ts"),
        c.target_ts.label("l_target_ts"),
        c.mapping_version.label("l_version"),
    ]


def _scanned(run_id: str, entity: str) -> tuple[Any, Any]:
    """The source's and the target's scanned keys of a compare, as two subqueries (``key``, ``hash``, ``ts``)."""
    k = compare_keys
    scanned = select(k.c.key, k.c.hash, k.c.ts).where(k.c.run_id == run_id, k.c.entity == entity)
    return scanned.where(k.c.side == SOURCE).subquery("s"), scanned.where(k.c.side == TARGET).subquery("t")


def _same_key(one: Any, other: Any) -> Any:
    return one.c.key == other.c.key


def _equal(s: Any, t: Any) -> Any:
    """Both sides hold the key with the same hash (a null hash is unreadable: never equal)."""
    return and_(s.c.hash.is_not(None), s.c.hash == t.c.hash)


def record_diffs(store: Store, run_id: str, entity: str, rows: Rows) -> None:
    """Store the decisions (``key``, ``action``, ``quiet_source``, ``quiet_target``, ``known``) of keys that differ."""
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
    """Set each result's ``quiet`` flag from its class and the flags its key got when compared.

    A record the exception queue held before the compare is known, so not quiet drift.
    """
    d, klass = compare_diffs, results.c["class"]
    flag = case(
        (d.c.known, false()),
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
