"""The PostgreSQL anchor benchmark's code path (``bench/anchor.py``) on a 10,000-row workload.

The same functions the benchmark times, on fresh databases of the test server: the
generated drift is classified as it was made (updated rows ``delayed``, new rows
``missing``), conservation holds, the target equals the source on every key of the window,
a rerun of the window finds everything in sync and writes nothing, and a run after the target was
rolled back restores it and audits what it replaced, and the run as installed (a child process
that cannot import the bench-only packages) starts from a fresh store. PostgreSQL's own
upsert and the SQLite store are checked on the same workload. Results, never timings.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench_modules import load_bench
from conftest import ServerDatabases

ROWS = 10_000
UPDATED, INSERTED, DELETED = ROWS // 10, ROWS // 100, ROWS // 200
DELTA = UPDATED + INSERTED


@pytest.fixture(scope="module")
def anchor() -> ModuleType:
    """``bench/anchor.py``."""
    return load_bench("anchor")


@pytest.fixture
def workload(
    anchor: ModuleType, postgres_databases: ServerDatabases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The anchor on three fresh databases, its configuration and connections in the environment."""
    databases = anchor.Databases(postgres_databases.new(), postgres_databases.new(), postgres_databases.new())
    made = anchor.generate(ROWS, 3, databases)
    for name, value in anchor.write_config(made, tmp_path / "config").items():
        monkeypatch.setenv(name, value)
    return made


def test_the_drift_is_made_as_described(workload: Any) -> None:
    assert (len(workload.updated), len(workload.inserted), len(workload.deleted)) == (UPDATED, INSERTED, DELETED)
    assert workload.delta == DELTA
    assert not set(workload.updated) & set(workload.deleted)
    assert min(workload.inserted) > max(workload.updated)


def test_an_incremental_run_syncs_the_delta_and_a_rerun_writes_nothing(anchor: ModuleType, workload: Any) -> None:
    first = anchor.run_truesync(workload.window, "postgres")
    assert anchor.check_run(workload, first, workload.databases.store) == {
        "delayed/updated": UPDATED,
        "missing/created": INSERTED,
    }
    assert first["records"] == DELTA
    assert set(first["stages"]) == {"extract", "classify", "load", "finalize"}
    assert first["cpu_seconds"]["python"] > 0
    # every row the target held stays (the source's deletions are invisible), plus the new ones
    assert anchor.check_results(workload) == {"compared": DELTA, "target_rows": ROWS + INSERTED}

    before = anchor.target_fingerprint(workload)
    again = anchor.run_truesync(workload.window, "postgres", tag="-rerun")
    assert anchor.check_run(workload, again, workload.databases.store, anchor.RERUN) == {"in_sync/unchanged": DELTA}
    assert anchor.target_fingerprint(workload) == before


def test_a_rolled_back_target_is_restored_and_every_replaced_value_audited(anchor: ModuleType, workload: Any) -> None:
    anchor.run_truesync(workload.window, "postgres")
    anchor.restore_target(workload)
    rolled = anchor.truesync_phase(workload, "postgres", None, anchor.ROLLED_BACK)
    assert rolled["class_outcomes"] == {"overwritten/updated": UPDATED, "missing/created": INSERTED}
    assert rolled["target_check"] == {"compared": DELTA, "target_rows": ROWS + INSERTED}
    with anchor.pg(workload.databases.store) as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT key FROM ts_audit WHERE run_id = %s", (rolled["run_id"],))
        audited = {int(key) for (key,) in cur.fetchall()}
    assert audited == set(workload.updated.tolist())


def test_the_run_as_installed_cannot_import_the_bench_only_packages_and_starts_from_a_fresh_store(
    anchor: ModuleType, workload: Any
) -> None:
    anchor.run_truesync(workload.window, "postgres")  # a ledger: on the same store the rerun would be overwritten
    installed = anchor.as_installed_phase(workload)
    assert installed["class_outcomes"] == {"delayed/updated": UPDATED, "missing/created": INSERTED}
    assert installed["target_check"] == {"compared": DELTA, "target_rows": ROWS + INSERTED}
    assert installed["records"] == DELTA
    assert installed["bench_only_importable"] == []


def test_postgres_upsert_and_the_sqlite_store_reach_the_same_target(anchor: ModuleType, workload: Any) -> None:
    pristine = anchor.target_fingerprint(workload)
    upsert = anchor.pg_upsert(workload)
    assert upsert["written"] == DELTA
    assert anchor.check_results(workload) == {"compared": DELTA, "target_rows": ROWS + INSERTED}

    anchor.restore_target(workload)
    assert anchor.target_fingerprint(workload) == pristine
    result = anchor.run_truesync(workload.window, "sqlite")
    assert anchor.check_run(workload, result, anchor.store_url_now()) == {
        "delayed/updated": UPDATED,
        "missing/created": INSERTED,
    }
    assert anchor.check_results(workload) == {"compared": DELTA, "target_rows": ROWS + INSERTED}
