"""The full-compare benchmark's code path (``bench/compare.py``) on 3,000 rows a side, results only.

Its weekly case: a sync writes the ledger, the source drifts (updates and inserts on the drift
day, deletes) and the target is edited behind truesync's back with its change time kept, then an
incremental sync of the drift day writes what moved. The compare after it must find exactly what
no change time shows, all of it quiet: the target's edits (``overwritten``, restored) and the
source's deletes (``deleted``, removed). With shop, CRM and store on PostgreSQL and whole-number
keys, both sides' digests go from database to database (``support.copy_stream``): neither side is
scanned into Python. Afterwards both tables hold the same rows, and a second compare finds nothing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from bench_modules import load_bench
from conftest import ServerDatabases

from truesync.connectors.sql.system import SqlSystem

ROWS = 3_000


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """``bench/compare.py``."""
    return load_bench("compare")


@pytest.fixture
def databases(
    bench: ModuleType, postgres_databases: ServerDatabases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The bench's equal tables on fresh databases, its configuration and connections in the environment."""
    made = bench.anchor.Databases(postgres_databases.new(), postgres_databases.new(), postgres_databases.new())
    bench.generate(ROWS, 5, made)
    bench.rebuild(made)
    for name, value in bench.write_config(made, tmp_path / "config").items():
        monkeypatch.setenv(name, value)
    return made


def _not_scanned(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a side scanned into Python, where both databases and the store can COPY digests")


def _rows(bench: ModuleType, url: Any) -> set[tuple[Any, ...]]:
    with bench.anchor.pg(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(bench.FIELDS.values())} FROM orders")
        return set(cur.fetchall())


def test_after_the_drift_days_sync_a_compare_copies_digests_and_finds_only_the_quiet_drift(
    bench: ModuleType, databases: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = bench.anchor.DRIFT_DAY
    assert bench.sync_child(bench.FLOW, day.isoformat())["entities"]["order"]["classes"] == {"in_sync": ROWS}
    made = bench.drift(ROWS, np.random.default_rng(6), databases)
    window = (day - bench.LOOKBACK, day + timedelta(days=1))
    caught_up = bench.sync_child(bench.FLOW, window[1].isoformat(), window[0].isoformat())["entities"]["order"]
    assert caught_up["classes"] == {"delayed": len(made.updated), "missing": len(made.inserted)}
    monkeypatch.setattr(SqlSystem, "scan_digests", _not_scanned)
    monkeypatch.setattr(SqlSystem, "scan", _not_scanned)
    read: set[int] = set()
    fetch = SqlSystem.fetch

    def counted(self: SqlSystem, mapping: Any, keys: list[str], hidden: Any = None) -> Any:
        read.update(int(key) for key in keys)
        return fetch(self, mapping, keys, hidden)

    monkeypatch.setattr(SqlSystem, "fetch", counted)

    compared = bench.compare_child(bench.FLOW, None)["entities"]["order"]

    quiet = {"overwritten": len(made.edited), "deleted": len(made.deleted)}
    assert compared["classes"] == {"in_sync": ROWS + len(made.inserted) - sum(quiet.values()), **quiet}
    assert compared["quiet"] == quiet and compared["conserved"]
    assert compared["outcomes"]["removed"] == len(made.deleted)
    assert read == {*made.edited.tolist(), *made.deleted.tolist()}, "copied digests confirm every other record"
    assert _rows(bench, databases.source) == _rows(bench, databases.target)
    read.clear()
    again = bench.compare_child(bench.FLOW, None)["entities"]["order"]
    assert again["classes"] == {"in_sync": ROWS + len(made.inserted) - len(made.deleted)}
    assert read == set()


def test_the_sandbox_part_compares_the_demo_systems_on_a_fresh_store_and_again_after_a_sync(
    bench: ModuleType, tmp_path: Path
) -> None:
    """``run_sandbox`` at 500 customers, each step in a process of its own on the sandbox's own
    connections (every system the demo has, its drop folder included): the first compare and the one
    after a sync of every demo day see the same restored systems, conserve every record, and the
    sync leaves more of them in sync."""
    result = bench.run_sandbox(500, tmp_path / "sandbox")

    assert result["init"]["scale"] == 500
    first, after = result["first"]["entities"], result["ledger"]["entities"]
    assert set(first) == set(after) == {"customer", "order"}
    assert result["first"]["bench_only_importable"] == [], "measured as an install from requirements.txt"
    for entity in first:
        assert first[entity]["conserved"] and after[entity]["conserved"], entity
        assert first[entity]["keys"] == after[entity]["keys"], "the same systems, restored before the sync"
        assert after[entity]["classes"]["in_sync"] > first[entity]["classes"]["in_sync"], entity
