"""Compare: the keys a full compare scanned on each side, those it could not confirm in sync, and
what it decided for each that differs.

Each system returns its rows in its own order (a REST listing by change time, a SQL table
in any order, collations that disagree), so neither side is merged in Python. Both are
appended here, key, hash and change time, each side to a table of its own made for the
compare (``schema.scanned_keys``), with the number of the chunk it was read in. The store's
own database joins them with the ledger once (``doubt``): every key it cannot confirm in sync
goes to ``ts_compare_doubt`` with both sides' readings and its ledger entry, nearly none after
syncs. The rest of the compare reads only those: the keys to read again by key
(``unconfirmed``, ``reread``), the ledger entries to refresh in place (``refresh_ledger``) and
the keys that differ, handed to Python a page at a time (``differences``), so memory stays
bounded by the page.
``ts_compare_diff`` keeps the decision for every key that is not simply in sync. When the run
ends, its scan tables are dropped (``purge``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from functools import partial
from typing import Any

import pandas as pd
from sqlalchemy import (
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    inspect,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.schema import DropTable

from truesync.core.classify import OVERWRITTEN
from truesync.core.compare import ALWAYS_QUIET, PAGE_COLUMNS, SOURCE_SIDE_CLASSES
from truesync.store.core import Store, key_pages
from truesync.store.ledger import LEDGER_COLUMNS
from truesync.store.schema import SCAN_PREFIX, compare_diffs, compare_doubts, ledger, results, scanned_keys
from truesync.store.statistics import analyze, refresh
from truesync.support.bulk import (
    Rows,
    insert,
    insert_from_select,
    selected_names,
    upsert,
    upsert_from_select,
    with_constants,
)
from truesync.support.copy_stream import copy_in
from truesync.support.frames import from_rows

SOURCE, TARGET = "S", "T"
DIGEST_PREFIX = "md5:"  # a hash that is a system's digest of the compared columns, not ``side_hash`` (``doubt``)
DOUBT_KEY = ("run_id", "entity", "key")
DOUBT_PARTS = 2  # concurrent statements of a doubt on PostgreSQL (``doubt``); a power of two


def clear(store: Store, run_id: str, entity: str) -> None:
    """Forget what a compare scanned, doubted and decided for an entity, so a retried task starts clean: its
    doubts and decisions are deleted, and both sides' scan tables made again, empty."""
    postgresql = store.engine.dialect.name == "postgresql"
    with store.engine.begin() as conn:
        for table in (compare_doubts, compare_diffs):
            conn.execute(delete(table).where(table.c.run_id == run_id, table.c.entity == entity))
        for side in (SOURCE, TARGET):
            table = scan_table(run_id, entity, side, postgresql)
            conn.execute(DropTable(table, if_exists=True))
            table.create(conn)


def scan_table(run_id: str, entity: str, side: str, postgresql: bool = False) -> Table:
    """One side's scan table of a compare, as queries read and write it, or as ``clear`` makes it on
    PostgreSQL (``postgresql``: UNLOGGED, no index; ``schema.scanned_keys``)."""
    return scanned_keys(_scan_name(run_id, entity, side), postgresql)


def scan_table_names(store: Store, run_id: str) -> list[str]:
    """The names of the scan tables a compare run has in the store (``clear`` makes them, ``purge`` drops them)."""
    prefix = _run_prefix(run_id)
    return sorted(name for name in inspect(store.engine).get_table_names() if name.startswith(prefix))


def record_keys(store: Store, run_id: str, entity: str, side: str, seq: int, rows: pd.DataFrame) -> int:
    """Append one side's ``key``, ``hash`` and ``ts`` as read in its chunk number ``seq``.

    Appended, never merged: a key read twice is settled once the side is read (``settle``).
    """
    with store.engine.begin() as conn:
        return insert(conn, scan_table(run_id, entity, side), with_constants(rows, seq=seq))


def copies_keys(store: Store) -> bool:
    """Whether ``copy_keys`` works: the store is on PostgreSQL."""
    return store.engine.dialect.name == "postgresql"


def copy_keys(store: Store, run_id: str, entity: str, side: str, lines: Generator[bytes, None, None]) -> int:
    """Append one side's ``key``, ``ts`` and ``hash`` as ``COPY`` text ``lines`` of another PostgreSQL
    database (``support.copy_stream``), as they come; returns the keys appended.

    As ``record_keys`` of one chunk, but no row passes through Python: the keys must be canonical
    and storable as they come (``CopiesDigests``). ``lines`` is closed however the copy ends, so a
    copy the store's driver gives up stops the other database's ``COPY`` at once.
    """
    with closing(lines), store.engine.begin() as conn:
        return copy_in(conn, scan_table(run_id, entity, side), ["key", "ts", "hash"], lines)


def settle(store: Store, run_id: str, entity: str, repeats: bool) -> None:
    """Make the scanned keys ready to join: where a side may have returned a key twice (``repeats``),
    only its last reading (highest ``seq``) stays; on PostgreSQL the statistics are refreshed, since
    just after a bulk load it has none and would misjudge the joins.
    """
    with store.engine.begin() as conn:
        for side in (SOURCE, TARGET):
            k = scan_table(run_id, entity, side)
            if repeats:
                later = k.alias("later")
                read_again = exists().where(later.c.key == k.c.key, later.c.seq > k.c.seq)
                conn.execute(delete(k).where(read_again))
            if store.engine.dialect.name == "postgresql":
                analyze(conn, k)


def side_count(store: Store, run_id: str, entity: str, side: str) -> int:
    """How many keys one side holds."""
    query = select(func.count()).select_from(scan_table(run_id, entity, side))
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def doubt(store: Store, flow: str, run_id: str, entity: str, version: str) -> int:
    """Write every key of the settled scans that is not confirmed in sync to ``ts_compare_doubt``, with both
    sides' readings and its ledger entry (``PAGE_COLUMNS``); returns how many. One statement: the
    records in sync, nearly all of a large compare, never leave the store's database.

    A key is **confirmed** when both sides hold it with equal hashes and its ledger entry, made
    under mapping ``version``, remembers the record as it is: it holds both hashes, or, where the
    hashes are digests (``DIGEST_PREFIX``), it says both sides were in sync (equal hashes) when the
    source showed the change time it shows now. The target's time is not asked, since a database
    may keep it coarser than the write time the entry holds. Every other key is doubted: keys that
    differ, keys one side holds, ledger entries of keys neither holds, and keys in sync whose entry
    is missing, of another version or stale.

    On PostgreSQL a full join of both sides and the ledger, each read once and hashed, in
    ``DOUBT_PARTS`` statements at once, each joining the keys of one part (``_part``): PostgreSQL
    runs no ``INSERT … SELECT`` in parallel itself. Elsewhere a union of three outer joins (SQLite has
    full joins only since 3.39).
    """
    if store.engine.dialect.name != "postgresql":
        return _insert_doubts(store, _outer_joins(*_scanned(run_id, entity), flow, entity, run_id, version))
    parts = [
        _full_join(*_scanned(run_id, entity, part), flow, entity, run_id, version, part) for part in range(DOUBT_PARTS)
    ]
    with ThreadPoolExecutor(DOUBT_PARTS, thread_name_prefix="truesync-doubt") as pool:
        return sum(pool.map(partial(_insert_doubts, store), parts))


def _insert_doubts(store: Store, query: Any) -> int:
    """Write the doubts ``query`` selects, in a transaction of its own."""
    with store.engine.begin() as conn:
        _hash_joins(conn)
        return conn.execute(compare_doubts.insert().from_select(selected_names(query), query)).rowcount


def unconfirmed(store: Store, run_id: str, entity: str, size: int) -> Iterator[list[str]]:
    """Doubted keys both sides hold (``doubt``), ``size`` a page in key order: read by digest, each must be
    read again and hashed as a scan does (``reread``), so it is compared and its entry refreshed as
    without digests."""
    d = compare_doubts
    query = select(d.c.key).where(d.c.run_id == run_id, d.c.entity == entity, d.c.s_seen == 1, d.c.t_seen == 1)
    return key_pages(store, query, d.c.key, size)


def reread(store: Store, run_id: str, entity: str, side: str, rows: pd.DataFrame) -> int:
    """Replace one side's reading (``hash``, ``ts``) of doubted keys with ``rows`` (``key``, ``hash``, ``ts``),
    read again by key; a key the side no longer returns keeps its digest, so it still differs."""
    prefix = "s" if side == SOURCE else "t"
    readings = rows.rename(columns={"hash": f"{prefix}_hash", "ts": f"{prefix}_ts"}).assign(**{f"{prefix}_seen": 1})
    updates = [f"{prefix}_seen", f"{prefix}_hash", f"{prefix}_ts"]
    with store.engine.begin() as conn:
        return upsert(conn, compare_doubts, with_constants(readings, run_id=run_id, entity=entity), DOUBT_KEY, updates)


def refresh_ledger(store: Store, flow: str, run_id: str, entity: str, entry: dict[str, Any]) -> int:
    """Write what both sides hold now into the ledger entry of every doubted record in sync (``doubt``):
    its entry is missing, made under another mapping version (``entry["mapping_version"]``) or
    stale on either hash; returns how many. One statement in the store: a merge, or an append when
    the entity has no entry yet (a first compare). ``entry`` holds the constant columns (mapping
    version, run, time, code versions). A key still read by digest is skipped: a digest is no hash.
    """
    d = compare_doubts
    due = or_(
        d.c.l_version.is_distinct_from(entry["mapping_version"]),
        d.c.l_source_hash.is_distinct_from(d.c.s_hash),
        d.c.l_target_hash.is_distinct_from(d.c.t_hash),
    )
    constants = {name: literal(value, ledger.c[name].type) for name, value in entry.items()}
    values = {"flow": literal(flow, ledger.c.flow.type), "entity": d.c.entity, "key": d.c.key}
    values |= {"source_hash": d.c.s_hash, "target_hash": d.c.t_hash, "source_ts": d.c.s_ts, "target_ts": d.c.t_ts}
    equal = and_(d.c.s_hash == d.c.t_hash, d.c.s_hash.not_like(DIGEST_PREFIX + "%"))
    query = select(*(value.label(name) for name, value in (values | constants).items())).where(
        d.c.run_id == run_id, d.c.entity == entity, equal, due
    )
    known = select(ledger.c.key).where(ledger.c.flow == flow, ledger.c.entity == entity).limit(1)
    with store.engine.begin() as conn:
        write = upsert_from_select if conn.execute(known).first() else insert_from_select
        written = write(conn, ledger, query, ("flow", "entity", "key"), LEDGER_COLUMNS)
    refresh(store, ledger, written)
    return written


def differences(store: Store, run_id: str, entity: str, size: int) -> Iterator[pd.DataFrame]:
    """Every doubted key that is not simply in sync (``doubt``), ``size`` keys a page, indexed by key
    (``core.compare.PAGE_COLUMNS``): keys the sides hold with different hashes (or a null one), keys
    one side holds, and ledger entries of keys neither side holds; streamed in no particular order.
    """
    d = compare_doubts
    columns = ["key", *PAGE_COLUMNS]
    query = select(*(d.c[c] for c in columns)).where(
        d.c.run_id == run_id, d.c.entity == entity, _unequal(d.c.s_hash, d.c.t_hash)
    )
    with store.engine.begin() as conn:
        for rows in conn.execution_options(yield_per=size).execute(query).partitions():
            yield from_rows(rows, columns).set_index("key")


def _full_join(s: Any, t: Any, flow: str, entity: str, run_id: str, version: str, part: int) -> Any:
    """``doubt``'s query for the keys of one ``part``: both sides and the entity's ledger, fully joined by key."""
    entries = select(ledger).where(ledger.c.flow == flow, ledger.c.entity == entity, _part(ledger.c.key, part))
    entries = entries.subquery("l")
    either = func.coalesce(s.c.key, t.c.key)
    joined = s.join(t, _same_key(s, t), full=True).join(entries, entries.c.key == either, full=True)
    seen = [case((side.c.key.is_not(None), 1)) for side in (s, t)]
    return (
        select(func.coalesce(either, entries.c.key).label("key"), *_sides(s, t, *seen), *_ledger_entry(entries))
        .add_columns(*_run(run_id, entity))
        .select_from(joined)
        .where(_confirmed(s, t, entries, version).is_not(true()))
    )


def _outer_joins(s: Any, t: Any, flow: str, entity: str, run_id: str, version: str) -> Any:
    """``doubt``'s query as a union: keys the source holds, keys only the target holds, entries neither holds."""
    in_ledger = and_(ledger.c.flow == flow, ledger.c.entity == entity)
    entry = [*_ledger_entry(ledger), *_run(run_id, entity)]
    absent = [null().label(f"{p}_{c}") for p in "st" for c in ("seen", "hash", "ts")]
    source_side = (
        select(s.c.key, *_sides(s, t, literal(1), case((t.c.key.is_not(None), 1))), *entry)
        .select_from(s.outerjoin(t, _same_key(s, t)).outerjoin(ledger, and_(in_ledger, ledger.c.key == s.c.key)))
        .where(_confirmed(s, t, ledger, version).is_not(true()))
    )
    target_only = (
        select(t.c.key, *absent[:3], literal(1).label("t_seen"), t.c.hash.label("t_hash"), t.c.ts.label("t_ts"))
        .add_columns(*entry)
        .select_from(t.outerjoin(ledger, and_(in_ledger, ledger.c.key == t.c.key)))
        .where(~exists().where(_same_key(t, s)))
    )
    scanned = [exists().where(side.c.key == ledger.c.key) for side in (s, t)]
    ledger_only = select(ledger.c.key, *absent, *entry).where(in_ledger, *(~held for held in scanned))
    return union_all(source_side, target_only, ledger_only)


def _confirmed(s: Any, t: Any, entry: Any, version: str) -> Any:
    """``doubt``'s rule: equal hashes on both sides, and an entry of ``version`` that remembers the record
    as it is (null, never true, where the key lacks a side or an entry)."""
    remembered = or_(
        and_(entry.c.source_hash == s.c.hash, entry.c.target_hash == t.c.hash),
        and_(
            s.c.hash.like(DIGEST_PREFIX + "%"),
            entry.c.source_hash == entry.c.target_hash,
            s.c.ts.is_not_distinct_from(entry.c.source_ts),
        ),
    )
    return and_(s.c.hash == t.c.hash, entry.c.mapping_version == version, remembered)


def _run(run_id: str, entity: str) -> list[Any]:
    """The run's constant columns of a doubt."""
    return [literal(run_id, compare_doubts.c.run_id.type).label("run_id"), literal(entity).label("entity")]


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


def _unequal(s_hash: Any, t_hash: Any) -> Any:
    """Not simply in sync: a side lacks the key, could not read it (a null hash), or the hashes differ."""
    return or_(s_hash.is_(None), t_hash.is_(None), s_hash != t_hash)


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


def _scanned(run_id: str, entity: str, part: int | None = None) -> tuple[Any, Any]:
    """The source's and the target's scanned keys of a compare, or of one ``part`` of its keys (``_part``),
    as two subqueries ``s`` and ``t`` (``key``, ``hash``, ``ts``)."""
    subqueries = []
    for side, name in ((SOURCE, "s"), (TARGET, "t")):
        k = scan_table(run_id, entity, side)
        query = select(k.c.key, k.c.hash, k.c.ts)
        subqueries.append((query if part is None else query.where(_part(k.c.key, part))).subquery(name))
    return subqueries[0], subqueries[1]


def _part(key: Any, part: int) -> Any:
    """Whether a key is of ``part`` of a doubt (``DOUBT_PARTS``): its hash's low bits, PostgreSQL's ``hashtext``."""
    return func.hashtext(key).op("&")(DOUBT_PARTS - 1) == part


def _scan_name(run_id: str, entity: str, side: str) -> str:
    """A scan table's name: the run's prefix (``_run_prefix``), the entity's digest and the side.

    Digests, since a run id and an entity name may be longer than a table name can be, or hold
    characters it cannot; 12 and 8 hexadecimal digits keep it under 64 characters.
    """
    return f"{_run_prefix(run_id)}{_digest(entity)[:8]}_{side.lower()}"


def _run_prefix(run_id: str) -> str:
    return f"{SCAN_PREFIX}{_digest(run_id)[:12]}_"


def _digest(name: str) -> str:
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()


def _same_key(one: Any, other: Any) -> Any:
    return one.c.key == other.c.key


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
    """Flag ``quiet`` the results whose class and compared key make them quiet drift; the others stay null,
    as every result of an incremental run does (not quiet).

    A record the exception queue held before the compare is known, so not quiet drift. Only the
    flagged rows are written: a first compare's results are mostly records written as the
    increments would have, and rewriting each of them cost seconds.
    """
    d, klass = compare_diffs, results.c["class"]
    quiet = (
        select(d.c.key)
        .where(d.c.run_id == results.c.run_id, d.c.entity == results.c.entity, d.c.key == results.c.key)
        .where(
            ~d.c.known,
            or_(
                klass.in_(SOURCE_SIDE_CLASSES) & d.c.quiet_source,
                (klass == OVERWRITTEN) & d.c.quiet_target,
                klass.in_(ALWAYS_QUIET),
            ),
        )
    )
    with store.engine.begin() as conn:
        conn.execute(update(results).where(results.c.run_id == run_id, quiet.exists()).values(quiet=True))


def purge(store: Store, run_id: str) -> None:
    """Drop the scan tables and the doubted keys of a finished compare: needed only while it runs."""
    names = scan_table_names(store, run_id)
    with store.engine.begin() as conn:
        for name in names:
            conn.execute(DropTable(scanned_keys(name), if_exists=True))
        conn.execute(delete(compare_doubts).where(compare_doubts.c.run_id == run_id))
