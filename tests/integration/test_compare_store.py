"""The store's part of a full compare on SQLite and PostgreSQL (``store.compare``): records in sync are
counted and their ledger refreshed inside the database, and only the keys that differ come out.

The rules are ``docs/design.md``'s ("Full compare"); ``tests/unit/test_compare.py`` has the
decisions ``core.compare.judge`` takes on the keys that come out.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from sqlalchemy import select

from truesync.store import Store, ledger
from truesync.store import compare as compared
from truesync.store.schema import ledger as ledger_table

FLOW, ENTITY, RUN, VERSION = "shop_to_crm", "customer", "compare__1", "shop@1->crm@1"
BEFORE, SCANNED, NOW = datetime(2026, 11, 1), datetime(2026, 11, 20, 9, 30), datetime(2026, 12, 6, 12)
# key: (source hash, target hash, ledger entry's source and target hash and version); None: absent
KEYS = {
    "new": ("h", "h", None),
    "current": ("h", "h", ("h", "h", VERSION)),
    "other_version": ("h", "h", ("h", "h", "shop@0->crm@1")),
    "stale_source": ("h2", "h2", ("h1", "h2", VERSION)),
    "stale_target": ("h", "h", ("h", "x", VERSION)),
    "differs": ("a", "b", ("a", "a", VERSION)),
    "unreadable": ("", "", None),  # '' stands for a null hash: a row the mapping could not read
    "source_only": ("s", None, None),
    "target_only": (None, "t", ("t", "t", VERSION)),
    "ledger_only": (None, None, ("l", "l", VERSION)),
}
IN_SYNC = {"new", "current", "other_version", "stale_source", "stale_target"}
REFRESHED = IN_SYNC - {"current"}


@pytest.fixture
def scanned(store: Store) -> Store:
    """The store (on SQLite, then PostgreSQL) holding a compare's scanned keys of ``KEYS`` and their ledger."""
    _scan_and_remember(store)
    return store


def _scan_and_remember(store: Store) -> None:
    compared.clear(store, RUN, ENTITY)
    for position, side in ((0, compared.SOURCE), (1, compared.TARGET)):
        held = {key: hashes[position] for key, hashes in KEYS.items() if hashes[position] is not None}
        rows = pd.DataFrame(
            {"key": list(held), "hash": [h or None for h in held.values()], "ts": pd.Timestamp(SCANNED)}
        )
        compared.record_keys(store, RUN, ENTITY, side, 0, rows)
    compared.settle(store, RUN, ENTITY, repeats=False)
    entries = [
        {"key": key, "source_hash": e[0], "target_hash": e[1], "source_ts": BEFORE, "target_ts": BEFORE,
         "mapping_version": e[2], "run_id": "sync__0", "synced_at": BEFORE, "code_versions": None}
        for key, (_, _, e) in KEYS.items() if e is not None
    ]  # fmt: skip
    ledger.write(store, FLOW, ENTITY, entries)
    other = {**entries[0], "key": "elsewhere"}
    ledger.write(store, FLOW, "order", [other])  # another entity's entry is no key of this compare
    compared.doubt(store, FLOW, RUN, ENTITY, VERSION)


def _ledger(store: Store, entity: str = ENTITY) -> dict[str, dict]:
    t = ledger_table
    query = select(t).where(t.c.flow == FLOW, t.c.entity == entity)
    with store.engine.connect() as conn:
        return {row.key: dict(row._mapping) for row in conn.execute(query)}


def test_the_ledger_of_records_in_sync_is_written_where_missing_or_stale_and_nowhere_else(scanned: Store) -> None:
    before = _ledger(scanned)
    entry = {"mapping_version": VERSION, "run_id": RUN, "synced_at": NOW, "code_versions": "codes@2"}

    assert compared.refresh_ledger(scanned, FLOW, RUN, ENTITY, entry) == len(REFRESHED)

    after = _ledger(scanned)
    for key in REFRESHED:
        source_hash, target_hash, _ = KEYS[key]
        assert after[key] == {
            "flow": FLOW, "entity": ENTITY, "key": key, "source_hash": source_hash, "target_hash": target_hash,
            "source_ts": SCANNED, "target_ts": SCANNED, "mapping_version": VERSION, "run_id": RUN,
            "synced_at": NOW, "code_versions": "codes@2",
        }, key  # fmt: skip
    unchanged = set(before) - REFRESHED
    assert {key: after[key] for key in unchanged} == {key: before[key] for key in unchanged}
    assert set(after) == set(before) | {"new"}, "a key out of sync or unreadable gets no entry"
    assert set(_ledger(scanned, "order")) == {"elsewhere"}


def test_only_the_keys_out_of_sync_come_out_with_both_sides_and_their_entry_a_page_at_a_time(scanned: Store) -> None:
    pages = list(compared.differences(scanned, RUN, ENTITY, size=2))

    assert all(len(page) <= 2 for page in pages)
    keys = [key for page in pages for key in page.index]
    assert sorted(keys) == sorted(set(KEYS) - IN_SYNC)
    page = pd.concat(pages)
    seen = {key: (bool(row["s_seen"] == 1), bool(row["t_seen"] == 1)) for key, row in page.iterrows()}
    assert seen == {
        "differs": (True, True), "unreadable": (True, True), "source_only": (True, False),
        "target_only": (False, True), "ledger_only": (False, False),
    }  # fmt: skip
    assert page.loc["differs", ["s_hash", "t_hash", "l_source_hash", "l_target_hash", "l_version"]].tolist() == [
        "a", "b", "a", "a", VERSION,
    ]  # fmt: skip
    assert page.loc["unreadable", ["s_hash", "t_hash", "l_source_hash"]].isna().all()
    assert pd.Timestamp(page.loc["target_only", "t_ts"]) == pd.Timestamp(SCANNED)
    assert pd.Timestamp(page.loc["ledger_only", "l_target_ts"]) == pd.Timestamp(BEFORE)
    assert page.loc["source_only", ["t_hash", "l_source_hash"]].isna().all()
    in_sync = compared.side_count(scanned, RUN, ENTITY, compared.SOURCE) - int(page["s_seen"].notna().sum())
    assert in_sync == len(IN_SYNC), "the records in sync: the source's keys not among the differences"


def test_a_first_compare_appends_every_entry_and_the_next_finds_none_stale(store: Store) -> None:
    first = "invoice"  # an entity with no ledger entry yet
    entry = {"mapping_version": VERSION, "run_id": RUN, "synced_at": NOW, "code_versions": None}
    rows = pd.DataFrame({"key": [f"I{i}" for i in range(75)], "hash": "h", "ts": pd.Timestamp(SCANNED)})
    refreshed = []
    for _ in range(2):  # the first compare, then the next
        compared.clear(store, RUN, first)
        _record(store, first, [(side, 0, rows) for side in (compared.SOURCE, compared.TARGET)])
        compared.settle(store, RUN, first, repeats=False)
        compared.doubt(store, FLOW, RUN, first, VERSION)
        refreshed.append(compared.refresh_ledger(store, FLOW, RUN, first, entry))
        assert len(_ledger(store, first)) == 75

    assert refreshed == [75, 0]


def _record(store: Store, entity: str, readings: list[tuple[str, int, dict[str, str | None] | pd.DataFrame]]) -> None:
    """Append each (side, chunk number, key -> hash, or rows) reading as a scan does."""
    for side, seq, read in readings:
        rows = read if isinstance(read, pd.DataFrame) else _readings(read)
        compared.record_keys(store, RUN, entity, side, seq, rows)


def _readings(hashes: dict[str, str | None], ts: datetime = SCANNED) -> pd.DataFrame:
    return pd.DataFrame({"key": list(hashes), "hash": list(hashes.values()), "ts": pd.Timestamp(ts)})


def _scanned_keys(store: Store, entity: str, run: str = RUN) -> list[tuple[str, str, str | None]]:
    read = []
    with store.engine.connect() as conn:
        for side in (compared.SOURCE, compared.TARGET):
            k = compared.scan_table(run, entity, side)
            read += [(side, key, hash_) for key, hash_ in conn.execute(select(k.c.key, k.c.hash))]
    return sorted(read)


@pytest.mark.parametrize("repeats", [True, False])
def test_a_key_read_twice_keeps_its_last_reading_once_the_side_is_settled(store: Store, repeats: bool) -> None:
    """Chunks are appended as read; a side that may repeat a key (a listing paged while it changes) is
    settled to each key's last reading. A side that promised each key once is left as it was read.
    """
    entity = "repeated"
    readings = [
        (compared.SOURCE, 0, {"a": "h1", "b": "h1"}),
        (compared.SOURCE, 1, {"a": "h2", "c": None}),
        (compared.SOURCE, 2, {"a": "h3"}),
        (compared.TARGET, 0, {"a": "t1"}),
        (compared.TARGET, 1, {"b": "t1"}),
    ]
    compared.clear(store, RUN, entity)
    compared.clear(store, "other_run", entity)
    _record(store, entity, readings)
    compared.record_keys(store, "other_run", entity, compared.SOURCE, 0, pd.DataFrame({"key": ["a"], "hash": "x"}))

    compared.settle(store, RUN, entity, repeats=repeats)

    settled = [("S", "a", "h3"), ("S", "b", "h1"), ("S", "c", None), ("T", "a", "t1"), ("T", "b", "t1")]
    read = sorted([("S", "a", "h1"), ("S", "a", "h2"), *settled])
    assert _scanned_keys(store, entity) == (settled if repeats else read)
    assert _scanned_keys(store, entity, "other_run") == [("S", "a", "x")]


def test_digests_are_doubted_unless_the_ledger_remembers_both_sides_in_sync_at_the_source_time_they_show(
    store: Store,
) -> None:
    """A key read by digest is confirmed only by equal digests and an entry of this mapping version with
    equal hashes made when the source showed the change time it shows now; the target's time is not asked."""
    entity = "digested"
    later = datetime(2026, 11, 25)
    entries = {  # key: (source hash, target hash, source time, version) of its ledger entry
        "confirmed": ("h", "h", SCANNED, VERSION),
        "target_time_moved": ("h", "h", SCANNED, VERSION),
        "source_time_moved": ("h", "h", BEFORE, VERSION),
        "entry_out_of_sync": ("h", "x", SCANNED, VERSION),
        "other_version": ("h", "h", SCANNED, "shop@0->crm@1"),
        "digests_differ": ("h", "h", SCANNED, VERSION),
    }
    source = {key: "md5:1" for key in [*entries, "no_entry"]}
    target = {**source, "digests_differ": "md5:2"}
    compared.clear(store, RUN, entity)
    _record(store, entity, [(compared.SOURCE, 0, source), (compared.TARGET, 0, _readings(target))])
    compared.record_keys(store, RUN, entity, compared.TARGET, 1, _readings({"target_time_moved": "md5:1"}, later))
    compared.settle(store, RUN, entity, repeats=True)
    ledger.write(store, FLOW, entity, [
        {"key": key, "source_hash": e[0], "target_hash": e[1], "source_ts": e[2], "target_ts": e[2],
         "mapping_version": e[3], "run_id": "sync__0", "synced_at": BEFORE, "code_versions": None}
        for key, e in entries.items()
    ])  # fmt: skip

    assert compared.doubt(store, FLOW, RUN, entity, VERSION) == 5

    doubted = [key for page in compared.unconfirmed(store, RUN, entity, size=2) for key in page]
    assert doubted == sorted(set(source) - {"confirmed", "target_time_moved"})


def test_a_key_read_again_replaces_only_its_own_sides_digest(store: Store) -> None:
    """``reread``: the side's hash and time of a doubted key become what was read by key; the other side's
    digest stays, and a key the side no longer returned keeps its digest, so it still differs."""
    entity = "read_again"
    compared.clear(store, RUN, entity)
    _record(store, entity, [(compared.SOURCE, 0, {"a": "md5:1", "b": "md5:1", "c": "md5:1"})])
    _record(store, entity, [(compared.TARGET, 0, {"a": "md5:2", "b": "md5:1", "c": "md5:3"})])
    compared.settle(store, RUN, entity, repeats=False)
    compared.doubt(store, FLOW, RUN, entity, VERSION)  # no entries: every key is doubted
    moved = datetime(2026, 11, 30)

    compared.reread(store, RUN, entity, compared.SOURCE, _readings({"a": "h1", "b": "h1"}, moved))
    compared.reread(store, RUN, entity, compared.TARGET, _readings({"a": "h2", "b": "h1"}))

    page = pd.concat(compared.differences(store, RUN, entity, size=10))
    assert sorted(page.index) == ["a", "c"], "b reads the same on both sides now"
    assert page.loc["a", ["s_hash", "t_hash"]].tolist() == ["h1", "h2"]
    assert pd.Timestamp(page.loc["a", "s_ts"]) == pd.Timestamp(moved)
    assert page.loc["c", ["s_hash", "t_hash"]].tolist() == ["md5:1", "md5:3"]
    entry = {"mapping_version": VERSION, "run_id": RUN, "synced_at": NOW, "code_versions": None}
    assert compared.refresh_ledger(store, FLOW, RUN, entity, entry) == 1
    assert _ledger(store, entity)["b"]["source_hash"] == "h1"
