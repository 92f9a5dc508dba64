"""The ledger: per flow, entity and key, what the last sync saw and wrote (``docs/design.md``, "Ledger").

It is what lets the classifier tell *who* changed since last time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import pandas as pd
from sqlalchemy import and_, delete, literal, or_, select

from truesync.store.core import Store, key_pages
from truesync.store.schema import ledger
from truesync.store.statistics import refresh
from truesync.support.bulk import Rows, in_pages, select_by_keys, upsert, upsert_mostly_new, with_constants
from truesync.support.frames import from_rows

LEDGER_COLUMNS = (
    "source_hash", "target_hash", "source_ts", "target_ts", "mapping_version", "run_id", "synced_at", "code_versions",
)  # fmt: skip


def lookup(store: Store, flow: str, entity: str, keys: list[str]) -> pd.DataFrame:
    """Ledger entries for ``keys`` (a chunk's worth), indexed by key."""
    columns = ["key", "source_hash", "target_hash", "mapping_version", "source_ts"]
    return _entries(store, columns, (ledger.c.flow == flow) & (ledger.c.entity == entity), keys).set_index("key")


def holds_entries(store: Store, flow: str, entity: str, version: str) -> bool:
    """Whether the entity has at least one entry made under mapping ``version``."""
    which = and_(ledger.c.flow == flow, ledger.c.entity == entity, ledger.c.mapping_version == version)
    with store.engine.connect() as conn:
        return conn.execute(select(literal(1)).where(which).limit(1)).first() is not None


def written(store: Store, pairs: list[tuple[str, str]], keys: list[str]) -> pd.DataFrame:
    """The entries of the (flow, entity) ``pairs`` for ``keys``: what each saw in its source
    (``source_hash``) and left in its target (``target_hash``), and the source's change time.

    Several pairs may name one key; the caller judges them (``core.classify.origin_ts``).
    """
    columns = ["key", "source_hash", "target_hash", "source_ts"]
    if not pairs or not keys:
        return pd.DataFrame(columns=columns)
    which = or_(*(and_(ledger.c.flow == flow, ledger.c.entity == entity) for flow, entity in pairs))
    return _entries(store, columns, which, keys)


def _entries(store: Store, columns: list[str], which: Any, keys: list[str]) -> pd.DataFrame:
    """``columns`` of the entries ``which`` selects, for ``keys``."""
    query = select(*(ledger.c[c] for c in columns)).where(which)
    with store.engine.connect() as conn:
        return from_rows(select_by_keys(conn, query, ledger.c.key, keys), columns)


def write(store: Store, flow: str, entity: str, rows: Rows, known: Collection[str] = ()) -> int:
    """Record what was seen and written for each key (after the target commit).

    ``known`` are the keys that had an entry when the chunk was classified (``lookup``): their
    entries are merged. The others are new, so on PostgreSQL they are appended with ``COPY``
    (``upsert_mostly_new``), which costs half the merge; an entry made since then only sends
    them through the merge too.
    """
    if not len(rows):
        return 0
    rows = with_constants(
        rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows)), flow=flow, entity=entity
    )
    new = ~rows["key"].isin(known).to_numpy()
    on = ("flow", "entity", "key")
    with store.engine.begin() as conn:
        written = upsert_mostly_new(conn, ledger, rows[new], on, LEDGER_COLUMNS)
        written += upsert(conn, ledger, rows[~new], on, LEDGER_COLUMNS)
    refresh(store, ledger, written)
    return written


def forget(store: Store, flow: str, entity: str, keys: list[str]) -> int:
    """Drop the entries of ``keys``: records a compare found gone, or deleted in the target."""
    where = (ledger.c.flow == flow) & (ledger.c.entity == entity)
    with store.engine.begin() as conn:
        gone = sum(conn.execute(delete(ledger).where(where, page)).rowcount for page in in_pages(ledger.c.key, keys))
    refresh(store, ledger, gone)
    return gone


def translated_otherwise(store: Store, flow: str, entity: str, labels: list[str], size: int) -> Iterator[list[str]]:
    """Keys whose entry was not translated by each of the code tables ``labels`` (``name@version``):
    an older version, or before the table was used. ``size`` keys at a time.
    """
    listed = literal(",") + ledger.c.code_versions + literal(",")
    missing = [~listed.contains(f",{label},", autoescape=True) for label in labels]
    stale = or_(ledger.c.code_versions.is_(None), *missing)
    query = select(ledger.c.key).where(ledger.c.flow == flow, ledger.c.entity == entity, stale)
    return key_pages(store, query, ledger.c.key, size)
