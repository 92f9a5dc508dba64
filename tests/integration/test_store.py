"""The store on SQLite and PostgreSQL: migrations, exception queue, watermarks, staging, ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import URL

from truesync.store import Store, ledger, queue, runs, staging, triage
from truesync.store import compare as compared
from truesync.store.core import MIGRATIONS, utcnow
from truesync.store.schema import metadata, watermarks

FLOW, ENTITY = "webshop_to_crm", "customer"
T0 = datetime(2026, 11, 1)


def _head() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def _versions(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM truesync_alembic_version")).scalars())


# --- migrations -----------------------------------------------------------------------------


def test_migrations_create_every_declared_table_and_column(store: Store) -> None:
    inspector = inspect(store.engine)
    tables = set(inspector.get_table_names())
    assert "truesync_alembic_version" in tables
    assert set(metadata.tables) <= tables
    for name, table in metadata.tables.items():
        columns = {c["name"] for c in inspector.get_columns(name)}
        assert set(table.c.keys()) <= columns, name
        indexes = {i["name"] for i in inspector.get_indexes(name)}
        assert {i.name for i in table.indexes} <= indexes, name
    assert _versions(store) == [_head()]
    if store.engine.dialect.name == "postgresql":  # a compare's scratch tables write no WAL
        compared.clear(store, "compare__1", "customer")  # makes the run's scan tables
        names = ["ts_compare_doubt", "ts_compare_diff", *compared.scan_table_names(store, "compare__1")]
        query = text("SELECT relpersistence FROM pg_class WHERE relname = ANY(:names)")
        with store.engine.connect() as conn:
            assert list(conn.execute(query, {"names": names}).scalars()) == ["u"] * 4


def test_migrating_twice_is_a_no_op(store_url: URL, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    runs.advance_watermark(store, FLOW, T0, "run-1")
    tables = set(inspect(store.engine).get_table_names())
    monkeypatch.setattr(Store, "_migrated", set())  # forget this process already migrated it
    again = Store(store_url)
    try:
        assert set(inspect(again.engine).get_table_names()) == tables
        assert _versions(again) == [_head()]
        assert runs.watermark(again, FLOW) == T0, "data survives a second migration"
    finally:
        again.engine.dispose()


def test_default_store_lives_in_the_state_directory(state: Path) -> None:
    handle = Store()
    try:
        assert handle.url.get_backend_name() == "sqlite"
        assert Path(handle.url.database) == state / "truesync.db"
        assert (state / "truesync.db").is_file()
        assert set(metadata.tables) <= set(inspect(handle.engine).get_table_names())
    finally:
        handle.engine.dispose()


# Three processes that open the same empty store together, as a scheduled run and a backfill's
# ``plan`` task do on first use: each waits for the start file, then migrates.
OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from truesync.store import Store
start, ready, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
while not start.exists():
    time.sleep(0.001)
Store(url).engine.dispose()
"""


def test_processes_opening_an_empty_store_at_once_all_succeed(store_url: URL, tmp_path: Path) -> None:
    """Exactly one migrates, the others wait for it and find the schema complete (no "table already exists")."""
    start = tmp_path / "start"
    url = store_url.render_as_string(hide_password=False)
    procs = []
    for n in range(3):
        cmd = [sys.executable, "-c", OPEN_AT_ONCE, str(start), str(tmp_path / f"ready-{n}"), url]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ))
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{n}").exists() for n in range(3)):
            assert time.monotonic() < deadline, "the processes did not get ready"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        start.touch()
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [rc for rc, _, _ in results] == [0, 0, 0], "\n".join(err for _, _, err in results)
    handle = Store(store_url)
    try:
        assert set(metadata.tables) | {"truesync_alembic_version"} == set(inspect(handle.engine).get_table_names())
        assert _versions(handle) == [_head()], "migrated once: one version row"
    finally:
        handle.engine.dispose()


# --- exception queue ------------------------------------------------------------------------


def _problem(key: str, reason: str = "unknown code 'X' in column 'tier_code'") -> dict[str, Any]:
    return {
        "key": key,
        "class": "invalid",
        "check_name": "known_code",
        "field": "tier",
        "reason": reason,
        "payload": json.dumps({"ext_id": key, "tier_code": "X"}),
    }


def _one(store: Store, key: str, entity: str = ENTITY) -> dict[str, Any]:
    rows = [r for r in queue.list_exceptions(store, flow=FLOW, entity=entity) if r["key"] == key]
    assert len(rows) == 1, rows
    return rows[0]


def test_quarantine_opens_one_exception_per_key(store: Store) -> None:
    assert queue.quarantine(store, FLOW, ENTITY, "run-1", [_problem("C1"), _problem("C2")]) == 2
    row = _one(store, "C1")
    assert (row["status"], row["attempts"], row["run_id"]) == ("open", 1, "run-1")
    assert (row["class"], row["check_name"], row["field"]) == ("invalid", "known_code", "tier")
    assert json.loads(row["payload"]) == {"ext_id": "C1", "tier_code": "X"}
    assert row["first_seen"] == row["last_seen"]


def test_quarantining_the_same_key_again_is_one_retrying_exception(store: Store) -> None:
    queue.quarantine(store, FLOW, ENTITY, "run-1", [_problem("C1")])
    first = _one(store, "C1")
    assert queue.quarantine(store, FLOW, ENTITY, "run-2", [_problem("C1", "still unknown code")]) == 0
    row = _one(store, "C1")
    assert row["id"] == first["id"]
    assert (row["status"], row["attempts"], row["run_id"], row["reason"]) == (
        "retrying",
        2,
        "run-2",
        "still unknown code",
    )
    assert row["first_seen"] == first["first_seen"] and row["last_seen"] >= first["last_seen"]
    queue.quarantine(store, FLOW, ENTITY, "run-3", [_problem("C1")])
    assert (_one(store, "C1")["status"], _one(store, "C1")["attempts"]) == ("retrying", 3)
    assert len(queue.list_exceptions(store)) == 1


def test_the_same_key_in_another_entity_or_flow_is_another_exception(store: Store) -> None:
    queue.quarantine(store, FLOW, ENTITY, "run-1", [_problem("X1")])
    assert queue.quarantine(store, FLOW, "order", "run-1", [_problem("X1")]) == 1
    assert queue.quarantine(store, "erp_to_stockctl", ENTITY, "run-1", [_problem("X1")]) == 1
    assert len(queue.list_exceptions(store)) == 3
    assert _one(store, "X1")["attempts"] == 1


def test_resolve_synced_resolves_active_exceptions_only(store: Store) -> None:
    queue.quarantine(store, FLOW, ENTITY, "run-1", [_problem("C1"), _problem("C2"), _problem("C3")])
    queue.quarantine(store, FLOW, ENTITY, "run-2", [_problem("C2")])  # C2 is retrying
    assert queue.resolve_synced(store, FLOW, ENTITY, "run-3", ["C1", "C2", "not-an-exception"]) == 2
    for key in ("C1", "C2"):
        row = _one(store, key)
        assert row["status"] == "resolved" and "run-3" in row["note"]
    assert _one(store, "C3")["status"] == "open"
    assert queue.resolve_synced(store, FLOW, ENTITY, "run-4", ["C1"]) == 0, "already resolved"
    assert queue.resolve_synced(store, FLOW, "order", "run-4", ["C3"]) == 0, "another entity"
    assert queue.resolve_synced(store, FLOW, ENTITY, "run-4", []) == 0


def test_a_resolved_exception_that_reappears_is_reopened(store: Store) -> None:
    queue.quarantine(store, FLOW, ENTITY, "run-1", [_problem("C1")])
    first = _one(store, "C1")
    queue.resolve_synced(store, FLOW, ENTITY, "run-2", ["C1"])
    assert queue.quarantine(store, FLOW, ENTITY, "run-3", [_problem("C1")]) == 1, "a reopening counts as opened"
    row = _one(store, "C1")
    assert (row["id"], row["status"], row["attempts"], row["run_id"]) == (first["id"], "open", 2, "run-3")
    assert queue.active_ids(store, FLOW, ENTITY, ["C1"]) == {"C1": first["id"]}


def test_an_ignored_exception_stays_ignored(store: Store) -> None:
    queue.quarantine(store, FLOW, ENTITY, "run-1", [_problem("C1")])
    ident = _one(store, "C1")["id"]
    assert _decide(store, "ignore", "known test customer", ident)["changed"] == 1
    assert queue.quarantine(store, FLOW, ENTITY, "run-2", [_problem("C1")]) == 0
    row = _one(store, "C1")
    assert (row["status"], row["note"]) == ("ignored", "known test customer")
    assert queue.resolve_synced(store, FLOW, ENTITY, "run-3", ["C1"]) == 0
    assert _one(store, "C1")["status"] == "ignored"
    assert queue.active_ids(store, FLOW, ENTITY, ["C1"]) == {}
    assert list(queue.active_keys(store, FLOW, ENTITY, 10)) == []


def _decide(store: Store, action: str, note: str, *ids: int) -> dict:
    return triage.decide(store, triage.Selection(flows=None, ids=ids), action, note, "tester")


def test_decisions_follow_the_rule_table_record_who_and_when_and_repeat_as_no_ops(store: Store) -> None:
    queue.quarantine(store, FLOW, ENTITY, "run-1", [_problem(k) for k in ("C1", "C2", "C3")])
    c1, c2, c3 = (_one(store, k)["id"] for k in ("C1", "C2", "C3"))
    with pytest.raises(ValueError, match="unknown action"):
        _decide(store, "close", "no such action", c1)
    with pytest.raises(ValueError, match="needs a reason"):
        _decide(store, "resolve", " ", c1)
    assert {r["status"] for r in queue.list_exceptions(store)} == {"open"}

    before = utcnow()
    done = _decide(store, "resolve", "typo fixed by hand", c1, c2)
    assert (done["changed"], done["left"]) == (2, {})
    row = queue.get(store, c1)
    assert (row["status"], row["note"], row["decided_by"]) == ("resolved", "typo fixed by hand", "tester")
    assert row["decided_at"] >= before

    again = _decide(store, "retry", "try again", c1, c3)
    assert (again["changed"], again["left"]) == (1, {"resolved": 1}), "a resolved exception is not sent back"
    assert triage.describe(again) == "1 marked retrying; left as they were: 1 resolved"
    assert queue.get(store, c3)["status"] == "retrying"
    assert _decide(store, "ignore", "not ours", c3)["changed"] == 1
    assert _decide(store, "ignore", "not ours", c3) == {"action": "ignore", "status": "ignored", "changed": 0,
                                                        "left": {"ignored": 1}}  # fmt: skip
    assert _decide(store, "retry", "back to the queue", c3)["changed"] == 1, "an ignored exception can be sent back"


def test_the_queue_pages_filter_and_export_within_the_visible_flows(store: Store) -> None:
    queue.quarantine(store, FLOW, ENTITY, "run-1", [_problem(f"C{i:02d}") for i in range(12)])
    queue.quarantine(store, FLOW, "order", "run-1", [_problem("O01")])
    queue.quarantine(store, "other_flow", ENTITY, "run-1", [_problem("C01")])
    mine = triage.Selection(flows=(FLOW,))
    rows, total = triage.page(store, mine, 0, 5)
    assert (len(rows), total) == (5, 13)
    second, _ = triage.page(store, mine, 5, 5)
    assert not {r["id"] for r in rows} & {r["id"] for r in second}
    assert triage.page(store, triage.Selection(flows=(FLOW,), entity="order"), 0, 50)[1] == 1
    assert triage.page(store, triage.Selection(flows=(FLOW,), key="C0"), 0, 50)[1] == 10
    assert triage.page(store, triage.Selection(flows=(FLOW,), key="%"), 0, 50)[1] == 0, "a key part is literal"
    assert triage.page(store, triage.Selection(flows=(FLOW,), older_than_days=1), 0, 50)[1] == 0
    assert triage.page(store, triage.Selection(flows=()), 0, 50)[1] == 0, "no visible flow, no exception"
    exported = list(triage.every(store, mine))
    assert len(exported) == 13 and len({r["id"] for r in exported}) == 13
    assert {r["flow"] for r in exported} == {FLOW}
    everything = triage.decide(store, triage.Selection(flows=(FLOW,), entity=ENTITY), "ignore", "bulk", "tester")
    assert everything["changed"] == 12
    assert queue.list_exceptions(store, flow="other_flow")[0]["status"] == "open", "another flow is untouched"


def test_active_keys_pages_through_every_active_key_once(store: Store) -> None:
    keys = [f"K{i:03d}" for i in range(23)]
    queue.quarantine(store, FLOW, ENTITY, "run-1", [_problem(k) for k in keys])
    queue.quarantine(store, FLOW, "order", "run-1", [_problem("K999")])
    queue.resolve_synced(store, FLOW, ENTITY, "run-2", ["K005"])
    ignored = _one(store, "K006")["id"]
    _decide(store, "ignore", "not ours", ignored)
    pages = list(queue.active_keys(store, FLOW, ENTITY, 5))
    assert all(len(p) <= 5 for p in pages)
    seen = [k for p in pages for k in p]
    assert sorted(seen) == sorted(set(keys) - {"K005", "K006"})
    assert len(seen) == len(set(seen))
    assert set(queue.active_ids(store, FLOW, ENTITY, keys)) == set(keys) - {"K005", "K006"}


# --- watermarks -----------------------------------------------------------------------------


def test_watermark_never_moves_backwards(store: Store) -> None:
    assert runs.watermark(store, FLOW) is None
    assert runs.advance_watermark(store, FLOW, T0 + timedelta(days=2), "run-2") == T0 + timedelta(days=2)
    assert runs.advance_watermark(store, FLOW, T0, "backfill-0") == T0 + timedelta(days=2)
    assert runs.watermark(store, FLOW) == T0 + timedelta(days=2)
    assert runs.advance_watermark(store, FLOW, T0 + timedelta(days=3), "run-3") == T0 + timedelta(days=3)
    assert runs.watermark(store, FLOW) == T0 + timedelta(days=3)
    assert runs.watermark(store, "erp_to_stockctl") is None, "each flow has its own watermark"
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(watermarks)).scalar() == 1


# --- staging --------------------------------------------------------------------------------


def _staged(key: str, payload: dict[str, Any], ts: datetime = T0) -> dict[str, Any]:
    return {
        "key": key,
        "source_ts": ts,
        "payload": json.dumps(payload),
        "check_name": None,
        "field": None,
        "reason": None,
    }


# Keys with mixed case, digits and punctuation, staged out of order: the database sorts them.
STAGE_KEYS = [f"C{i:04d}" for i in range(0, 40, 3)] + ["a-1", "A_2", "b.3", "null-key:ff00", "Z", "0"]


def test_staged_chunks_return_every_key_once_and_a_restaged_key_replaces_the_old(store: Store) -> None:
    keys = list(reversed(STAGE_KEYS))
    assert staging.stage(store, "run-1", ENTITY, [_staged(k, {"v": 1}) for k in keys]) == len(keys)
    later = T0 + timedelta(hours=1)
    staging.stage(store, "run-1", ENTITY, [_staged(k, {"v": 2}, later) for k in keys[:5]])
    staging.stage(store, "run-1", "order", [_staged("O1", {"v": 1})])
    staging.stage(store, "run-2", ENTITY, [_staged("C9999", {"v": 1})])

    for size in (1, 4, 7, 100):
        chunks = list(staging.staged_chunks(store, "run-1", ENTITY, size))
        assert all(0 < len(c) <= size for c in chunks)
        seen = [k for c in chunks for k in c["key"]]
        assert Counter(seen) == Counter(keys), size
        assert len(chunks) == -(-len(keys) // size)
    frame = next(staging.staged_chunks(store, "run-1", ENTITY, 100)).set_index("key")
    for key in keys[:5]:
        assert json.loads(frame.at[key, "payload"]) == {"v": 2}
        assert frame.at[key, "source_ts"] == later
    assert json.loads(frame.at[keys[-1], "payload"]) == {"v": 1}
    assert staging.count(store, "run-1", ENTITY) == len(keys)


def test_staging_results_and_clear(store: Store) -> None:
    staging.stage(store, "run-1", ENTITY, [_staged(k, {"k": k}) for k in ("C1", "C2")])
    staging.record_results(
        store,
        "run-1",
        ENTITY,
        [
            {
                "key": "C1",
                "class": "missing",
                "outcome": "created",
                "overdue": True,
                "check_name": None,
                "field": None,
                "reason": None,
            },
            {
                "key": "C2",
                "class": "invalid",
                "outcome": "quarantined",
                "overdue": False,
                "check_name": "known_code",
                "field": "tier",
                "reason": "unknown code",
            },
        ],
    )
    results = staging.run_results(store, "run-1", ENTITY).set_index("key")
    assert results.loc["C1", ["class", "outcome"]].tolist() == ["missing", "created"]
    assert bool(results.at["C1", "overdue"]) is True
    assert results.loc["C2", ["class", "outcome", "check_name"]].tolist() == ["invalid", "quarantined", "known_code"]
    assert staging.outcomes(store, "run-1", ENTITY, ["C1", "C2", "C3"]) == {"C1": "created", "C2": "quarantined"}
    staging.clear_results(store, "run-1", ENTITY)
    assert staging.run_results(store, "run-1", ENTITY).empty
    staging.clear(store, "run-1", ENTITY)
    assert staging.count(store, "run-1", ENTITY) == 0
    assert list(staging.staged_chunks(store, "run-1", ENTITY, 10)) == []


# --- ledger ---------------------------------------------------------------------------------


def test_ledger_keeps_one_entry_per_key_with_the_latest_sync(store: Store) -> None:
    def entry(key: str, source_hash: str, run_id: str) -> dict[str, Any]:
        return {
            "key": key,
            "source_hash": source_hash,
            "target_hash": source_hash[::-1],
            "source_ts": T0,
            "target_ts": T0,
            "mapping_version": "webshop@3->crm@5",
            "run_id": run_id,
            "synced_at": T0,
        }

    ledger.write(store, FLOW, ENTITY, [entry("C1", "aaaa1111", "run-1"), entry("C2", "bbbb2222", "run-1")])
    ledger.write(store, FLOW, ENTITY, [entry("C1", "cccc3333", "run-2")])
    found = ledger.lookup(store, FLOW, ENTITY, ["C1", "C2", "C3"])
    assert sorted(found.index) == ["C1", "C2"]
    assert found.loc["C1", ["source_hash", "target_hash"]].tolist() == ["cccc3333", "3333cccc"]
    assert ledger.lookup(store, FLOW, "order", ["C1"]).empty


def test_ledger_appends_new_keys_and_merges_known_ones_even_when_a_key_was_entered_since(store: Store) -> None:
    """``known`` (the keys ``lookup`` found at classification) are merged, the others appended (``COPY`` on
    PostgreSQL); a key entered since the lookup, so not known, is still merged, never doubled or refused."""

    entries = metadata.tables["ts_ledger"]

    def run_of(keys: range) -> set[str]:
        query = select(entries.c.run_id).where(entries.c.key.in_([f"C{n:05d}" for n in keys]))
        with store.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    ledger.write(store, FLOW, ENTITY, pd.DataFrame(_ledger_entries(range(100), "run-1")))
    known = [f"C{n:05d}" for n in range(50, 100)]
    ledger.write(store, FLOW, ENTITY, pd.DataFrame(_ledger_entries(range(50, 250), "run-2")), known)
    ledger.write(store, FLOW, ENTITY, pd.DataFrame(_ledger_entries(range(200, 300), "run-3")))  # 200-249 entered
    assert len(ledger.lookup(store, FLOW, ENTITY, [f"C{n:05d}" for n in range(400)])) == 300
    assert (run_of(range(50)), run_of(range(50, 200)), run_of(range(200, 300))) == ({"run-1"}, {"run-2"}, {"run-3"})


def _ledger_entries(keys: range, run_id: str) -> list[dict[str, Any]]:
    return [
        {"key": f"C{n:05d}", "source_hash": "aaaa", "target_hash": "aaaa", "source_ts": T0, "target_ts": T0,
         "mapping_version": "webshop@3->crm@5", "run_id": run_id, "synced_at": T0}
        for n in keys
    ]  # fmt: skip


def _rows_known(store: Store, table: str) -> float:
    """What the planner's statistics say the table holds (``pg_class.reltuples``; -1: never analyzed)."""
    with store.engine.connect() as conn:
        return float(conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": table}).scalar())


def test_a_bulk_write_gives_the_planner_statistics_that_look_keys_up(postgres_url: URL) -> None:
    """``docs/design.md``, "Planner statistics": the first write of more than 50 rows analyzes a table,
    and so does a write of more rows than its statistics know of; with statistics a lookup of a
    few keys among many entries of one entity goes by the key, where without them it reads every
    entry and filters.
    """
    store = Store(postgres_url)
    try:
        assert _rows_known(store, "ts_ledger") == -1
        ledger.write(store, FLOW, ENTITY, _ledger_entries(range(3000), "run-1"))
        assert _rows_known(store, "ts_ledger") == 3000
        query = text(
            "EXPLAIN SELECT key FROM ts_ledger WHERE flow = :flow AND entity = :entity "
            "AND key = ANY(CAST(:keys AS VARCHAR[]))"
        )
        with store.engine.connect() as conn:
            plan = conn.execute(query, {"flow": FLOW, "entity": ENTITY, "keys": ["C00001", "C02999"]}).scalars().all()
        cond = next(line for line in plan if "Index Cond" in line)
        assert "ANY" in cond and not any("Filter" in line for line in plan), plan
        ledger.write(store, FLOW, ENTITY, _ledger_entries(range(2000, 5000), "run-2"))  # 3,000: not more than known
        assert _rows_known(store, "ts_ledger") == 3000, "a write no bigger than the table leaves its statistics"
        ledger.write(store, FLOW, ENTITY, _ledger_entries(range(5000, 8001), "run-3"))
        assert _rows_known(store, "ts_ledger") == 8001
        assert ledger.forget(store, FLOW, ENTITY, [f"C{n:05d}" for n in range(1000)]) == 1000
        assert _rows_known(store, "ts_ledger") == 8001
        result = {"class": "in_sync", "outcome": "unchanged", "overdue": False}
        staging.record_results(store, "run-2", ENTITY, [{"key": f"C{n:05d}", **result} for n in range(50)])
        assert _rows_known(store, "ts_result") == -1, "50 rows are too few to analyze"
        staging.record_results(store, "run-3", ENTITY, [{"key": f"C{n:05d}", **result} for n in range(80)])
        assert _rows_known(store, "ts_result") == 130
    finally:
        store.engine.dispose()


def test_an_exception_opened_concurrently_stays_one(store: Store) -> None:
    """Two runs of one flow (a backfill beside the scheduled run) hold the same record at once."""
    row = {"key": "C1", "class": "invalid", "check_name": "not_null", "field": "k", "reason": "null", "payload": "{}"}
    assert queue.quarantine(store, FLOW, ENTITY, "run-a", [row]) == 1
    real_select = queue.select

    def blind_select(*args: object, **kwargs: object) -> object:
        """The other run has not seen this run's row yet."""
        query = real_select(*args, **kwargs)
        return query.where(queue.exceptions.c.key == "never")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(queue, "select", blind_select)
        queue.quarantine(store, FLOW, ENTITY, "run-b", [row])
    assert [e["key"] for e in queue.list_exceptions(store, flow=FLOW)] == ["C1"]
