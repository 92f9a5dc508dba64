"""The PostgreSQL anchor benchmark (issue #10): truesync next to dlt and PostgreSQL's own upsert.

What it measures, on one machine, in one process and one session:

a. truesync's incremental run of one day's delta of a TPC-H-shaped ``orders`` table
   (``truesync.pipeline.runner.run_flow``), with the store on PostgreSQL as production
   sets it up: wall time, time per stage (extract, classify, load from the run report,
   finalize = the rest), records/s and the peak RSS of the phase; its classes are checked
   (updated rows ``delayed``, new rows ``missing``, conservation) and so is the target;
a2. the same delta again on the PostgreSQL store, which now holds a's ledger, with the target
   rolled back to before a (as after a restore from backup): the updated records are
   ``overwritten`` (restored, every replaced value audited) and the new ones ``missing``, so
   this measures classification and writing with a ledger, which a first run never has;
b. the same run with the default SQLite store, on a restored target;
c. PostgreSQL's own set-based upsert of the same delta from the same data, the physical
   limit of the load stage: the delta COPYed out of the source into a temporary table of
   the target, then one ``INSERT … SELECT … ON CONFLICT DO UPDATE … WHERE … IS DISTINCT FROM``;
a'. a again, on a fresh store and a restored target, as requirements.txt installs truesync:
   in a child process that cannot import the packages ``bench/requirements.txt`` adds and
   the engine would use (``BENCH_ONLY``: pandas keeps text in pyarrow when it can import it,
   44 MiB on import alone). Its peak RSS is the one the aim is about; a's includes them;
d. dlt's ``sql_table`` (pyarrow backend, incremental on ``updated_at`` over the same
   window) to its postgres destination with ``merge`` on the key (``bench/requirements.txt``);
e. the SQLite sandbox benchmark ``bench/sync_bench.py --rows 1000000 --delta 100000
   --factor 10`` as a subprocess.

It ends with one table of wall time, records/s, peak RSS, the ratio to dlt and the ratio of
the load stage to PostgreSQL's upsert, beside the aims of the issue.

The data. Three databases on one server (``--server``, default the local PostgreSQL):

- ``ts_anchor_source``: ``orders`` (``o_orderkey`` bigint primary key, ``o_custkey``,
  ``o_orderstatus`` F/O/P, ``o_totalprice`` numeric(15,2), ``o_orderdate``,
  ``o_orderpriority``, ``o_clerk``, ``o_comment``, change time ``updated_at``; index
  ``(updated_at, o_orderkey)``), ``--rows`` rows COPYed from numpy-generated CSV, all
  changed before the drift day;
- ``ts_anchor_target``: ``orders`` with its own column names (``order_key`` unique,
  ``customer_key``, ``status`` as a word, ``total``, ``order_date``, ``priority``,
  ``clerk``, ``comment``, ``modified_at``), a copy of the source taken before the drift,
  and ``orders_pristine``, the same copy kept aside so every measured phase starts from
  the same target (the table is rebuilt from it, indexed and vacuumed before each phase);
  dlt's destination is the schema ``dlt_anchor`` of the same database, seeded from that copy
  with the source's column names and dlt's two bookkeeping columns, keyed like the target;
- ``ts_anchor_store``: truesync's store.

Then the source drifts on the drift day (2026-11-01): 10% of the rows are updated (comment
revised, total raised, open orders finished), 1% inserted, 0.5% deleted (a deletion is
invisible to an incremental run; kept for the full-compare issue). The run's window is
that day widened by the flow's lookback (2h), as a daily Airflow run has it; the delta is
the updated and inserted rows (165,000 of 1.5M).

The configuration is written to a temporary directory (``TRUESYNC_CONFIG_DIR``) the way a
user would set it up for a large delta: one entity ``order`` with the key and 7 fields, the
status codes mapped to words (no user expectations, so each chunk is checked alone),
``chunk_size: 20000`` (memory is bounded by it: at 50,000 the run held 60-90 MiB more),
``partition_size: 1000000`` (one partition), ``freshness_sla: 1d``
(a daily flow); connections as ``AIRFLOW_CONN_<ID>`` variables with ``postgresql+psycopg2://``
URLs. Imports (truesync, Great Expectations, dlt) happen before the clock starts and are
reported apart.

    python bench/anchor.py [--rows 1500000] [--skip-dlt] [--skip-sqlite-sandbox] [--profile FILE]
                           [--server URL] [--seed N] [--keep] [--json FILE]

dlt is a bench-only requirement: ``.venv/bin/pip install -r bench/requirements.txt -c constraints.txt``.
``--profile FILE`` runs phase a under cProfile (its figures then include the profiler's cost).
``--keep`` leaves the databases in place. ``tests/integration/test_anchor.py`` runs the same
code on 10,000 rows and checks the results, not the timings.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import importlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import yaml
from sqlalchemy.engine import URL, make_url

DEFAULT_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DATABASES = ("ts_anchor_source", "ts_anchor_target", "ts_anchor_store")
DRIFT_DAY = datetime(2026, 11, 1)
LOOKBACK = timedelta(hours=2)
FLOW, ENTITY = "anchor", "order"
FIRST, RERUN, ROLLED_BACK = "first", "rerun", "rolled-back"  # kinds of run over the window (EXPECTED)
SOURCE_SYSTEM, TARGET_SYSTEM = "anchor_source", "anchor_target"
CHUNK_SIZE, PARTITION_SIZE = 20_000, 1_000_000
COPY_ROWS = 250_000
STATUS_WORDS = {"F": "finished", "O": "open", "P": "partial"}
PRIORITIES = np.array(["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"], dtype=object)
WORDS = ["furiously", "quickly", "carefully", "blithely", "slyly", "final", "regular", "express", "special", "ironic"]
# canonical field: (source column, target column); the key first
FIELDS = {
    "order_id": ("o_orderkey", "order_key"),
    "customer_id": ("o_custkey", "customer_key"),
    "status": ("o_orderstatus", "status"),
    "total": ("o_totalprice", "total"),
    "order_date": ("o_orderdate", "order_date"),
    "priority": ("o_orderpriority", "priority"),
    "clerk": ("o_clerk", "clerk"),
    "comment": ("o_comment", "comment"),
}
SOURCE_COLUMNS = [s for s, _ in FIELDS.values()]
TARGET_COLUMNS = [t for _, t in FIELDS.values()]
PAGE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BENCH_DIR = Path(__file__).resolve().parent
# Packages bench/requirements.txt brings that the engine uses when they are there: pandas stores
# text through pyarrow (44 MiB on import), requests parses JSON with simplejson. A user's install
# (requirements.txt) has neither, so phase a' runs where they cannot be imported.
BENCH_ONLY = ("pyarrow", "simplejson", "dlt")
WITHOUT_BENCH_ONLY = (
    f"import runpy, sys; sys.modules.update(dict.fromkeys({BENCH_ONLY!r})); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


# ---------------------------------------------------------------- databases and COPY


@dataclass(frozen=True)
class Databases:
    """The three databases of the anchor: source, target and truesync's store."""

    source: URL
    target: URL
    store: URL

    @classmethod
    def on_server(cls, server: URL | str) -> Databases:
        base = make_url(server)
        return cls(*(base.set(database=name) for name in DATABASES))

    def all(self) -> tuple[URL, URL, URL]:
        return self.source, self.target, self.store


def dsn(url: URL) -> str:
    """A libpq URI for psycopg2, password included (never printed)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def pg(url: URL, autocommit: bool = False) -> Iterator[Any]:
    """A psycopg2 connection; committed on success unless autocommit."""
    conn = psycopg2.connect(dsn(url))
    conn.autocommit = autocommit
    try:
        yield conn
        if not autocommit:
            conn.commit()
    finally:
        conn.close()


def execute(url: URL, *statements: str, autocommit: bool = False) -> None:
    with pg(url, autocommit) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def create_databases(server: URL | str, databases: Databases) -> None:
    """Drop and create the three databases (a fresh run every time)."""
    for url in databases.all():
        execute(make_url(server), *fresh_database(url), autocommit=True)


def fresh_database(url: URL) -> tuple[str, str]:
    """The statements that make ``url``'s database anew, run on any other database of its server."""
    return f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)', f'CREATE DATABASE "{url.database}"'


def drop_databases(server: URL | str, databases: Databases) -> None:
    for url in databases.all():
        execute(make_url(server), f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)', autocommit=True)


def copy_frame(cur: Any, table: str, columns: list[str], frame: pd.DataFrame) -> None:
    """COPY a frame into a table as CSV, ``COPY_ROWS`` rows per round trip."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
    for start in range(0, len(frame), COPY_ROWS):
        buffer = io.StringIO()
        frame.iloc[start : start + COPY_ROWS].to_csv(buffer, index=False, header=False, float_format="%.2f")
        buffer.seek(0)
        cur.copy_expert(statement, buffer)


def transfer(source: URL, query: str, params: tuple[Any, ...], target: URL, copy_in: str) -> None:
    """``COPY (query) TO STDOUT`` on one database into ``copy_in`` (a ``COPY … FROM STDIN``) on another."""
    with tempfile.TemporaryFile() as spool:
        with pg(source) as conn, conn.cursor() as cur:
            cur.copy_expert(f"COPY ({cur.mogrify(query, params).decode()}) TO STDOUT", spool)
        spool.seek(0)
        with pg(target) as conn, conn.cursor() as cur:
            cur.copy_expert(copy_in, spool)


# ---------------------------------------------------------------- the workload


@dataclass
class Workload:
    """The generated anchor: where it lives, its window and the keys the drift touched."""

    databases: Databases
    rows: int
    seed: int
    window_start: datetime
    window_end: datetime
    updated: np.ndarray  # keys updated inside the window
    inserted: np.ndarray  # keys inserted inside the window
    deleted: np.ndarray  # keys deleted from the source (no incremental run sees them)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def window(self) -> tuple[datetime, datetime]:
        return self.window_start, self.window_end

    @property
    def delta(self) -> int:
        return len(self.updated) + len(self.inserted)

    @property
    def target_rows_before(self) -> int:
        return self.rows


def order_keys(first: int, count: int) -> np.ndarray:
    """TPC-H's sparse order keys: 8 used out of every 32."""
    i = np.arange(first, first + count, dtype=np.int64)
    return (i // 8) * 32 + (i % 8) + 1


def orders_frame(keys: np.ndarray, rng: np.random.Generator, changed_from: datetime, seconds: int) -> pd.DataFrame:
    """TPC-H-shaped orders for ``keys`` whose change times fall in ``[changed_from, +seconds)``."""
    n = len(keys)
    comments = np.array([" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(4096)], dtype=object)
    clerks = np.array([f"Clerk#{c:09d}" for c in range(1, 1001)], dtype=object)
    micros = rng.integers(0, seconds * 1_000_000, size=n)
    return pd.DataFrame(
        {
            "o_orderkey": keys,
            "o_custkey": rng.integers(1, max(n // 10, 2), size=n),
            "o_orderstatus": rng.choice(np.array(list("FOP"), dtype=object), size=n, p=[0.49, 0.49, 0.02]),
            "o_totalprice": rng.integers(85_771, 55_528_516, size=n) / 100,
            "o_orderdate": np.datetime64("1992-01-01") + rng.integers(0, 2405, size=n).astype("timedelta64[D]"),
            "o_orderpriority": PRIORITIES[rng.integers(0, len(PRIORITIES), size=n)],
            "o_clerk": clerks[rng.integers(0, len(clerks), size=n)],
            "o_comment": comments[rng.integers(0, len(comments), size=n)],
            "updated_at": np.datetime64(changed_from, "us") + micros.astype("timedelta64[us]"),
        }
    )


SOURCE_DDL = """
CREATE TABLE orders (
    o_orderkey bigint NOT NULL, o_custkey bigint NOT NULL, o_orderstatus char(1) NOT NULL,
    o_totalprice numeric(15,2) NOT NULL, o_orderdate date NOT NULL, o_orderpriority varchar(15) NOT NULL,
    o_clerk varchar(15) NOT NULL, o_comment varchar(79) NOT NULL, updated_at timestamp NOT NULL)
"""
SOURCE_INDEXES = (
    "ALTER TABLE orders ADD PRIMARY KEY (o_orderkey)",
    "CREATE INDEX orders_updated_at_key ON orders (updated_at, o_orderkey)",
)
TARGET_DDL = """
CREATE TABLE orders_pristine (
    order_key bigint NOT NULL, customer_key bigint, status varchar(20), total numeric(15,2), order_date date,
    priority varchar(15), clerk varchar(15), comment varchar(79), modified_at timestamp)
"""
STATUS_CASE = "CASE {column} " + " ".join(f"WHEN '{c}' THEN '{w}'" for c, w in STATUS_WORDS.items()) + " END"


def generate(rows: int, seed: int, databases: Databases) -> Workload:
    """Fill the (empty) source and target databases and drift the source; see the module docstring."""
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}
    with timed(timings, "source"):
        base = orders_frame(order_keys(0, rows), rng, DRIFT_DAY - timedelta(days=30), 29 * 86_400)
        with pg(databases.source) as conn, conn.cursor() as cur:
            cur.execute(SOURCE_DDL)
            copy_frame(cur, "orders", list(base.columns), base)
            for statement in SOURCE_INDEXES:
                cur.execute(statement)
        del base
    with timed(timings, "target copy"):
        copy_target(databases)
    workload = drift(rows, seed, rng, databases, timings)
    with timed(timings, "restore target"):
        restore_target(workload)
    execute(databases.source, "VACUUM ANALYZE orders", autocommit=True)
    return workload


def copy_target(databases: Databases) -> None:
    """The target before the drift: the source's rows under the target's names, status as a word."""
    execute(databases.target, TARGET_DDL)
    selected = [STATUS_CASE.format(column=c) if c == "o_orderstatus" else c for c in SOURCE_COLUMNS]
    query = f"SELECT {', '.join(selected)}, updated_at FROM orders"
    copy_in = f"COPY orders_pristine ({', '.join(TARGET_COLUMNS)}, modified_at) FROM STDIN"
    transfer(databases.source, query, (), databases.target, copy_in)


def drift(rows: int, seed: int, rng: np.random.Generator, databases: Databases, timings: dict[str, float]) -> Workload:
    """Update 10%, insert 1%, delete 0.5% of the source, all changed inside the drift day."""
    keys = order_keys(0, rows)
    order = rng.permutation(rows)
    n_updated, n_deleted, n_inserted = rows // 10, rows // 200, rows // 100
    updated, deleted = np.sort(keys[order[:n_updated]]), np.sort(keys[order[n_updated : n_updated + n_deleted]])
    new = orders_frame(order_keys(rows, n_inserted), rng, DRIFT_DAY, 86_400)
    changes = pd.DataFrame(
        {
            "k": updated,
            "ts": np.datetime64(DRIFT_DAY, "us") + rng.integers(0, 86_400_000_000, n_updated).astype("timedelta64[us]"),
            "bump": rng.integers(1, 10_000, n_updated) / 100,
        }
    )
    with timed(timings, "drift"), pg(databases.source) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE drift (k bigint PRIMARY KEY, ts timestamp, bump numeric(15,2))")
        copy_frame(cur, "drift", ["k", "ts", "bump"], changes)
        cur.execute(
            "UPDATE orders o SET o_totalprice = o.o_totalprice + d.bump,"
            " o_comment = left(o.o_comment, 60) || ' revised',"
            " o_orderstatus = CASE WHEN o.o_orderstatus = 'O' THEN 'F' ELSE o.o_orderstatus END,"
            " updated_at = d.ts FROM drift d WHERE o.o_orderkey = d.k"
        )
        cur.execute("CREATE TEMP TABLE gone (k bigint PRIMARY KEY)")
        copy_frame(cur, "gone", ["k"], pd.DataFrame({"k": deleted}))
        cur.execute("DELETE FROM orders o USING gone g WHERE o.o_orderkey = g.k")
        copy_frame(cur, "orders", list(new.columns), new)
    return Workload(
        databases,
        rows,
        seed,
        DRIFT_DAY - LOOKBACK,
        DRIFT_DAY + timedelta(days=1),
        updated,
        new["o_orderkey"].to_numpy(),
        deleted,
        timings,
    )


def restore_target(workload: Workload) -> None:
    """Rebuild the target's ``orders`` from ``orders_pristine``: every phase starts from the same target."""
    execute(
        workload.databases.target,
        "DROP TABLE IF EXISTS orders",
        "CREATE TABLE orders (LIKE orders_pristine INCLUDING ALL)",
        "INSERT INTO orders SELECT * FROM orders_pristine",
        "CREATE UNIQUE INDEX orders_order_key ON orders (order_key)",
    )
    execute(workload.databases.target, "VACUUM ANALYZE orders", autocommit=True)


# ---------------------------------------------------------------- the truesync configuration


def write_config(workload: Workload, directory: Path) -> dict[str, str]:
    """The anchor's four YAML files in ``directory``; returns the environment a user would set."""
    directory.mkdir(parents=True, exist_ok=True)
    documents = {
        "systems": {
            SOURCE_SYSTEM: {"kind": "sql", "connection": "ts_anchor_source", "description": "TPC-H orders"},
            TARGET_SYSTEM: {"kind": "sql", "connection": "ts_anchor_target", "description": "copy of the orders"},
        },
        "entities": {ENTITY: entity_config()},
        "mappings": {
            SOURCE_SYSTEM: mapping_config("orders", 0, "updated_at", {"status": STATUS_WORDS}),
            TARGET_SYSTEM: mapping_config("orders", 1, "modified_at", {}),
        },
        "flows": {FLOW: flow_config()},
    }
    for name, body in documents.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump({name: body}, sort_keys=False))
    state = directory.parent / "state"
    return {
        "TRUESYNC_CONFIG_DIR": str(directory),
        "TRUESYNC_STATE_DIR": str(state),
        "AIRFLOW_CONN_TS_ANCHOR_SOURCE": workload.databases.source.render_as_string(hide_password=False),
        "AIRFLOW_CONN_TS_ANCHOR_TARGET": workload.databases.target.render_as_string(hide_password=False),
        "AIRFLOW_CONN_TRUESYNC_STORE": workload.databases.store.render_as_string(hide_password=False),
    }


def entity_config() -> dict[str, Any]:
    return {
        "key": "order_id",
        "fields": {
            "order_id": {"type": "integer", "required": True},
            "customer_id": {"type": "integer", "required": True},
            "status": {"type": "string", "required": True},
            "total": {"type": "decimal", "scale": 2, "required": True, "min": 0},
            "order_date": {"type": "date", "required": True},
            "priority": {"type": "string", "required": True},
            "clerk": {"type": "string"},
            "comment": {"type": "string"},
        },
    }


def mapping_config(table: str, side: int, cursor: str, codes: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "table": table,
        "key": FIELDS["order_id"][side],
        "cursor": cursor,
        "fields": {name: columns[side] for name, columns in FIELDS.items()},
    }
    if codes:
        body["codes"] = codes
    return {"version": 1, "entities": {ENTITY: body}}


def flow_config() -> dict[str, Any]:
    return {
        "source": SOURCE_SYSTEM,
        "target": TARGET_SYSTEM,
        "entities": [ENTITY],
        "description": "The PostgreSQL anchor benchmark (bench/anchor.py).",
        "lookback": "2h",
        "freshness_sla": "1d",
        "chunk_size": CHUNK_SIZE,
        "partition_size": PARTITION_SIZE,
        "ownership": {ENTITY: {"*": SOURCE_SYSTEM}},
    }


# ---------------------------------------------------------------- measuring


def release_free_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc), so a phase starts from live memory only."""
    gc.collect()
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def own_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, every thread included."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def postgres_cpu_seconds() -> float:
    """CPU seconds (user + system) every PostgreSQL process on this machine has used, those ended included.

    Read from /proc: each live ``postgres`` process's own time, plus the time of the ones that
    ended, which the postmaster holds as its waited-for children's (a backend that ended in the
    last moment may not be reaped yet). Only a local server is seen; the unit is a clock tick.
    """
    ticks = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().startswith("postgres"):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / CLOCK_TICKS


class Phase:
    """Wall time, CPU time and peak RSS of a block, RSS sampled from /proc/self/statm by a background thread.

    ``ru_maxrss`` only grows over a process's life, so each phase samples its own peak; the
    RSS at its start (the process's imports and what earlier phases keep) is reported beside it.
    CPU time is this process's (every thread) and the local PostgreSQL server's: on a machine
    of two cores, their sum over two is the shortest wall time the same work could take.
    """

    def __init__(self, every: float = 0.01) -> None:
        self.every, self.seconds, self.start_rss, self.peak = every, 0.0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> Phase:
        release_free_memory()
        self.start_rss = self.peak = rss_bytes()
        self._thread.start()
        self._cpu = (own_cpu_seconds(), postgres_cpu_seconds())
        self._began = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._began
        self.cpu = (own_cpu_seconds() - self._cpu[0], postgres_cpu_seconds() - self._cpu[1])
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    def figures(self, records: int) -> dict[str, Any]:
        return {
            "wall_seconds": round(self.seconds, 3),
            "records": records,
            "records_per_s": round(records / self.seconds) if self.seconds else None,
            "peak_rss_mib": round(self.peak / 2**20, 1),
            "start_rss_mib": round(self.start_rss / 2**20, 1),
            "cpu_seconds": {"python": round(self.cpu[0], 2), "postgresql": round(self.cpu[1], 2)},
        }


@contextmanager
def timed(into: dict[str, float], name: str) -> Iterator[None]:
    began = time.perf_counter()
    yield
    into[name] = round(time.perf_counter() - began, 3)


def warm_imports() -> dict[str, float]:
    """Import what the phases use before any clock starts; returns the seconds each took."""
    took: dict[str, float] = {}
    with timed(took, "truesync and great_expectations"):
        import truesync.pipeline.runner  # noqa: F401
        import truesync.quality.gx  # noqa: F401 - GX, which the run imports on first use (Data Docs)
    return took


# ---------------------------------------------------------------- the phases


def run_truesync(
    window: tuple[datetime, datetime], store: str = "postgres", profile: Path | None = None, tag: str = ""
) -> dict[str, Any]:
    """One incremental run of the anchor flow over ``window`` (the drift's); figures, report and run id.

    ``store`` is ``postgres`` (the ``truesync_store`` connection) or ``sqlite`` (the default
    file in the state directory, made fresh). The configuration and connections come from the
    environment ``write_config`` returned.
    """
    from truesync.config import load_config
    from truesync.pipeline.runner import run_flow
    from truesync.pipeline.window import Window
    from truesync.store import Store

    config, handle = load_config(), Store(store_url(store))
    run_id = f"{FLOW}:{store}{tag}-{time.time_ns()}"
    profiler = cProfile.Profile() if profile else None
    try:
        with Phase() as phase:
            if profiler:
                profiler.enable()
            report = run_flow(config, handle, FLOW, run_id, Window(*window))
            if profiler:
                profiler.disable()
    finally:
        handle.engine.dispose()
    if profiler and profile:
        profiler.dump_stats(str(profile))
    return {"store": store, "run_id": run_id, **stage_figures(phase, report), "report": report}


def store_url(store: str) -> URL:
    from truesync.support.connections import sqlalchemy_url
    from truesync.support.paths import state_dir

    if store == "postgres":
        return sqlalchemy_url("truesync_store")
    path = state_dir() / "truesync.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return make_url(f"sqlite:///{path}")


def stage_figures(phase: Phase, report: dict[str, Any]) -> dict[str, Any]:
    entity = report["entities"][ENTITY]
    stages = {k.removesuffix("_seconds"): v for k, v in entity["durations"].items()}
    stages["finalize"] = round(phase.seconds - sum(stages.values()), 3)
    return {**phase.figures(entity["extracted"]), "stages": stages}


# (class, outcome) of the updated keys and of the inserted keys, per kind of run over the window:
# the first run; a rerun; a run on a store holding the first run's ledger, the target rolled back to
# before it (the updated records were changed in the target since truesync wrote them, the new ones
# are gone from it).
EXPECTED = {
    FIRST: (("delayed", "updated"), ("missing", "created")),
    RERUN: (("in_sync", "unchanged"), ("in_sync", "unchanged")),
    ROLLED_BACK: (("overwritten", "updated"), ("missing", "created")),
}


def expected_keys(workload: Workload, case: str) -> Iterator[tuple[tuple[str, str], np.ndarray]]:
    """(class, outcome) and the keys that must get it, for the updated and then the inserted keys."""
    return zip(EXPECTED[case], (workload.updated, workload.inserted), strict=True)


def expected_counts(workload: Workload, case: str = FIRST) -> dict[str, dict[str, int]]:
    """The classes and outcomes a run of the window must report."""
    counts: dict[str, Counter[str]] = {"classes": Counter(), "outcomes": Counter()}
    for (klass, outcome), keys in expected_keys(workload, case):
        counts["classes"][klass] += len(keys)
        counts["outcomes"][outcome] += len(keys)
    return {part: dict(counted) for part, counted in counts.items()}


def check_run(workload: Workload, result: dict[str, Any], store: URL, case: str = FIRST) -> dict[str, int]:
    """Assert the run's counts, conservation and, key by key, the class of every record; returns class x outcome."""
    report, expected = result["report"], expected_counts(workload, case)
    entity = report["entities"][ENTITY]
    assert report["status"] == "success", report["status"]
    assert entity["conserved"], entity
    assert entity["extracted"] == workload.delta, (entity["extracted"], workload.delta)
    for part in ("classes", "outcomes"):
        got = {k: v for k, v in entity[part].items() if v}
        assert got == expected[part], (part, got, expected[part])
    per_key = result_classes(store, result["run_id"])
    wanted: dict[str, set[str]] = {}
    for (klass, _), keys in expected_keys(workload, case):
        wanted.setdefault(klass, set()).update(str(k) for k in keys)
    for klass, keys in wanted.items():
        assert_keys(per_key, klass, keys)
    return {f"{c}/{o}": int(n) for (c, o), n in per_key.groupby(["class", "outcome"]).size().items()}


def result_classes(store: URL, run_id: str) -> pd.DataFrame:
    """Every record's class and outcome in the run, from the store's ``ts_result``."""
    from sqlalchemy import text

    from truesync.support.sqldb import open_engine

    engine = open_engine(store)
    try:
        with engine.connect() as conn:
            query = text('SELECT "key", "class", outcome FROM ts_result WHERE run_id = :r AND entity = :e')
            rows = conn.execute(query, {"r": run_id, "e": ENTITY}).all()
    finally:
        engine.dispose()
    return pd.DataFrame(rows, columns=["key", "class", "outcome"])


def assert_keys(per_key: pd.DataFrame, klass: str, wanted: set[str]) -> None:
    found = set(per_key.loc[per_key["class"] == klass, "key"])
    assert found == wanted, f"{klass}: {len(found ^ wanted)} keys differ, e.g. {sorted(found ^ wanted)[:5]}"


def check_results(workload: Workload) -> dict[str, int]:
    """The target equals the source on every mapped field for every key the window covered.

    Also: the target holds every row it held before plus the inserted ones (the source's
    deletions are invisible to an incremental run). Returns what was compared.
    """
    source = window_rows(workload).set_index("order_key").sort_index()
    target = target_rows(workload, source.index.to_numpy()).set_index("order_key").sort_index()
    assert source.index.equals(target.index), f"{len(source.index.symmetric_difference(target.index))} keys differ"
    differs = (source != target).any(axis=1)
    assert not differs.any(), (
        f"{int(differs.sum())} records differ, e.g.\n{source[differs].head(3)}\n{target[differs].head(3)}"
    )
    with pg(workload.databases.target) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        count = cur.fetchone()[0]
    assert count == workload.target_rows_before + len(workload.inserted), count
    return {"compared": len(source), "target_rows": count}


def window_rows(workload: Workload) -> pd.DataFrame:
    """The source's rows in the window as text, under the target's names, status mapped to its word."""
    selected = [STATUS_CASE.format(column=c) if c == "o_orderstatus" else c for c in SOURCE_COLUMNS]
    query = f"SELECT {', '.join(selected)} FROM orders WHERE updated_at >= %s AND updated_at < %s"
    return copy_out(workload.databases.source, query, (workload.window_start, workload.window_end))


def target_rows(workload: Workload, keys: np.ndarray) -> pd.DataFrame:
    with pg(workload.databases.target) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE wanted (k bigint PRIMARY KEY) ON COMMIT DROP")
        copy_frame(cur, "wanted", ["k"], pd.DataFrame({"k": keys}))
        query = f"SELECT {', '.join('t.' + c for c in TARGET_COLUMNS)} FROM orders t JOIN wanted w ON w.k = t.order_key"
        return copy_cursor(cur, query)


def copy_out(url: URL, query: str, params: tuple[Any, ...]) -> pd.DataFrame:
    with pg(url) as conn, conn.cursor() as cur:
        return copy_cursor(cur, cur.mogrify(query, params).decode())


def copy_cursor(cur: Any, query: str) -> pd.DataFrame:
    buffer = io.StringIO()
    cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)", buffer)
    buffer.seek(0)
    return pd.read_csv(buffer, names=TARGET_COLUMNS, dtype=str, keep_default_na=False)


def target_fingerprint(workload: Workload) -> tuple[int, str, str]:
    """Row count, latest change time and a digest of every target row: equal when nothing was written."""
    digest = "md5(string_agg(t::text, '|' ORDER BY order_key))"
    with pg(workload.databases.target) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*), max(modified_at)::text, {digest} FROM orders t")
        return cur.fetchone()


UPSERT = """
INSERT INTO orders ({columns}, modified_at)
SELECT o_orderkey, o_custkey, {status}, o_totalprice, o_orderdate, o_orderpriority, o_clerk, o_comment,
       (now() AT TIME ZONE 'utc')
FROM delta
ON CONFLICT (order_key) DO UPDATE SET {sets}, modified_at = EXCLUDED.modified_at
WHERE ({old}) IS DISTINCT FROM ({new})
"""


def pg_upsert(workload: Workload) -> dict[str, Any]:
    """PostgreSQL's own set-based load of the delta: COPY source → temp table of the target, one upsert."""
    compared = TARGET_COLUMNS[1:]
    statement = UPSERT.format(
        columns=", ".join(TARGET_COLUMNS),
        status=STATUS_CASE.format(column="o_orderstatus"),
        sets=", ".join(f"{c} = EXCLUDED.{c}" for c in compared),
        old=", ".join(f"orders.{c}" for c in compared),
        new=", ".join(f"EXCLUDED.{c}" for c in compared),
    )
    query = f"SELECT {', '.join(SOURCE_COLUMNS)} FROM orders WHERE updated_at >= %s AND updated_at < %s"
    steps: dict[str, float] = {}
    with Phase() as phase, tempfile.TemporaryFile() as spool:
        with timed(steps, "copy_out"), pg(workload.databases.source) as conn, conn.cursor() as cur:
            params = (workload.window_start, workload.window_end)
            cur.copy_expert(f"COPY ({cur.mogrify(query, params).decode()}) TO STDOUT", spool)
        spool.seek(0)
        with pg(workload.databases.target) as conn, conn.cursor() as cur:
            with timed(steps, "copy_in"):
                cur.execute(DELTA_DDL)
                cur.copy_expert(f"COPY delta ({', '.join(SOURCE_COLUMNS)}) FROM STDIN", spool)
            with timed(steps, "upsert"):
                cur.execute(statement)
                written = cur.rowcount
                conn.commit()
    figures = phase.figures(workload.delta)
    figures["upsert_seconds"] = steps["upsert"]
    figures["upsert_records_per_s"] = round(workload.delta / steps["upsert"])
    return {**figures, "steps": steps, "written": written}


DELTA_DDL = """
CREATE TEMP TABLE delta (
    o_orderkey bigint, o_custkey bigint, o_orderstatus char(1), o_totalprice numeric(15,2), o_orderdate date,
    o_orderpriority varchar(15), o_clerk varchar(15), o_comment varchar(79))
"""


DLT_SCHEMA = "dlt_anchor"


def prepare_dlt(workload: Workload) -> None:
    """dlt's destination before the drift: the pristine target under the source's names in ``dlt_anchor``.

    With the pyarrow backend dlt adds no bookkeeping columns to the table, so this is the table
    dlt itself would have made from the source (checked on a small load), keyed like the target.
    """
    back = [f"{t} AS {s}" for s, t in zip(SOURCE_COLUMNS, TARGET_COLUMNS, strict=True) if t != "status"]
    status = "CASE status " + " ".join(f"WHEN '{w}' THEN '{c}'" for c, w in STATUS_WORDS.items()) + " END"
    back.insert(2, f"({status})::varchar AS o_orderstatus")
    execute(
        workload.databases.target,
        f"DROP SCHEMA IF EXISTS {DLT_SCHEMA} CASCADE",
        f"DROP SCHEMA IF EXISTS {DLT_SCHEMA}_staging CASCADE",
        f"CREATE SCHEMA {DLT_SCHEMA}",
        f"CREATE TABLE {DLT_SCHEMA}.orders AS SELECT {', '.join(back)}, modified_at AS updated_at FROM orders_pristine",
        f"ALTER TABLE {DLT_SCHEMA}.orders ALTER o_orderkey SET NOT NULL, ALTER updated_at SET NOT NULL",
        f"CREATE UNIQUE INDEX dlt_orders_key ON {DLT_SCHEMA}.orders (o_orderkey)",
    )
    execute(workload.databases.target, f"VACUUM ANALYZE {DLT_SCHEMA}.orders", autocommit=True)


def import_dlt() -> float | None:
    """Import dlt with telemetry and its Airflow secrets lookup off; the seconds it took, None when not installed."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")
    began = time.perf_counter()
    try:
        import dlt  # noqa: F401
        from dlt.sources.sql_database import sql_table  # noqa: F401
    except ImportError:
        return None
    return round(time.perf_counter() - began, 3)


def run_dlt(workload: Workload, pipelines_dir: Path) -> dict[str, Any]:
    """dlt ``sql_table`` (pyarrow, incremental on updated_at over the window) → postgres ``merge`` on the key."""
    import dlt
    from dlt.sources.sql_database import sql_table

    target = workload.databases.target
    # dlt's postgres credentials need a password; the local server trusts, so any will do there.
    credentials = dsn(target.set(password=target.password or "trust"))
    pipeline = dlt.pipeline(
        pipeline_name=f"ts_anchor_{time.time_ns()}",
        destination=dlt.destinations.postgres(credentials=credentials),
        dataset_name=DLT_SCHEMA,
        pipelines_dir=str(pipelines_dir),
    )
    resource = sql_table(
        credentials=workload.databases.source.render_as_string(hide_password=False),
        table="orders",
        backend="pyarrow",  # and dlt's own chunk size (50,000)
        incremental=dlt.sources.incremental(
            "updated_at", initial_value=workload.window_start, end_value=workload.window_end
        ),
        write_disposition="merge",
        primary_key="o_orderkey",
    )
    with Phase() as phase:
        info = pipeline.run(resource)
    assert not info.has_failed_jobs, info
    steps = {s.step: round((s.finished_at - s.started_at).total_seconds(), 3) for s in pipeline.last_trace.steps}
    return {**phase.figures(workload.delta), "steps": steps, **check_dlt(workload)}


def check_dlt(workload: Workload) -> dict[str, int]:
    """dlt's table holds every row it held plus the inserted ones, and the window's rows as the source has them."""
    window = (workload.window_start, workload.window_end)
    with pg(workload.databases.target) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {DLT_SCHEMA}.orders")
        total = cur.fetchone()[0]
        cur.execute(f"SELECT count(*) FROM {DLT_SCHEMA}.orders WHERE updated_at >= %s AND updated_at < %s", window)
        in_window = cur.fetchone()[0]
    assert total == workload.rows + len(workload.inserted), total
    assert in_window == workload.delta, in_window
    return {"dlt_rows": total}


def run_sandbox(rows: int = 1_000_000, delta: int = 100_000, factor: int = 10) -> dict[str, Any]:
    """``bench/sync_bench.py`` in its own process (it sets up its own SQLite systems and store)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRUESYNC_", "AIRFLOW_CONN_"))}
    command = [sys.executable, str(BENCH_DIR / "sync_bench.py"), "--rows", str(rows), "--delta", str(delta)]
    command += ["--factor", str(factor)]
    print("  $", " ".join(command[1:]), flush=True)
    lines: list[str] = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            print("  |", line, end="", flush=True)
            lines.append(line)
    if child.returncode != 0:
        raise RuntimeError(f"sync_bench.py failed with exit code {child.returncode}")
    return parse_sandbox("".join(lines))


def parse_sandbox(output: str) -> dict[str, Any]:
    """The JSON result of each size and the slowdown line from ``sync_bench.py``'s output."""
    results, decoder = [], json.JSONDecoder()
    for block in output.split("\n==")[0:]:
        start = block.find("\n{")
        if start >= 0:
            results.append(decoder.raw_decode(block[start + 1 :])[0])
    slowdown = None
    for line in output.splitlines():
        if line.startswith("slowdown"):
            slowdown = float(line.rsplit(" ", 1)[1].rstrip("x"))
    return {"runs": results, "slowdown": slowdown}


# ---------------------------------------------------------------- the table


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per measurement: what, wall s, records/s, peak RSS MiB, CPU s, ratio to dlt, load / PG upsert, aim."""
    dlt_rate = (results.get("dlt") or {}).get("records_per_s")
    upsert = results["pg_upsert"]["upsert_seconds"]
    rows = []
    for name, key, aim in (
        ("truesync, PostgreSQL store", "truesync_postgres", "ratio to dlt >= 1 (2 hoped); load <= 2x; RSS < 400 MiB"),
        ("truesync, PostgreSQL store, target rolled back", "truesync_rolled_back", "every updated record overwritten"),
        ("truesync, SQLite store", "truesync_sqlite", ""),
        ("truesync, PostgreSQL store, as installed", "truesync_as_installed", "RSS < 400 MiB"),
    ):
        r = results[key]
        load_ratio = ratio(r["stages"]["load"], upsert)
        to_dlt = ratio(r["records_per_s"], dlt_rate)
        rows.append([name, *pg_figures(r), to_dlt, load_ratio, aim])
    pg_result = results["pg_upsert"]
    rows.append(
        ["PostgreSQL upsert alone", upsert, pg_result["upsert_records_per_s"], None, None, None, 1.0, "physical limit"]
    )
    to_dlt = ratio(pg_result["records_per_s"], dlt_rate)
    rows.append(["PostgreSQL COPY + upsert", *pg_figures(pg_result), to_dlt, None, ""])
    if results.get("dlt"):
        d = results["dlt"]
        rows.append(["dlt sql_table -> postgres merge", *pg_figures(d), 1.0, None, ""])
    rows.extend(sandbox_rows(results.get("sandbox")))
    return [["" if v is None else f"{v:,}" if isinstance(v, int | float) else str(v) for v in row] for row in rows]


def sandbox_rows(sandbox: dict[str, Any] | None) -> list[list[Any]]:
    if not sandbox:
        return []
    rows = []
    for run in sandbox["runs"]:
        aim = ">= 30,000 rec/s" if run is sandbox["runs"][0] else f"<= 1.5x time (is {sandbox['slowdown']}x)"
        name = f"SQLite sandbox, {run['rows']:,} rows, delta {run['extracted']:,}"
        rate, rss = run["total_records_per_s"], run["peak_rss_mib"]
        rows.append([name, run["total_seconds"], rate, rss, None, None, None, aim])
    return rows


HEADER = [
    "what", "wall s", "records/s", "peak RSS MiB", "CPU s: Python + PostgreSQL",
    "ratio to dlt", "load / PG upsert", "aim",
]  # fmt: skip


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for row in [HEADER, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)) + " |")


def print_truesync(name: str, r: dict[str, Any]) -> None:
    stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
    rate, rss = f"{r['records_per_s']:,} records/s", f"peak RSS {r['peak_rss_mib']} MiB (at start {r['start_rss_mib']})"
    cpu = f"CPU s: Python {r['cpu_seconds']['python']}, PostgreSQL {r['cpu_seconds']['postgresql']}"
    print(f"  {name}: {r['wall_seconds']:.2f} s ({stages}), {rate}, {rss}, {cpu}", flush=True)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_500_000, help="rows of the source table before the drift")
    parser.add_argument("--seed", type=int, default=10)
    server = os.environ.get("TRUESYNC_BENCH_POSTGRES_URL") or DEFAULT_SERVER
    parser.add_argument("--server", default=server, help="PostgreSQL server URL (any database on it)")
    parser.add_argument("--skip-dlt", action="store_true", help="leave out dlt (also skipped when not installed)")
    parser.add_argument("--skip-sqlite-sandbox", action="store_true", help="leave out bench/sync_bench.py (minutes)")
    parser.add_argument("--profile", type=Path, help="run the PostgreSQL-store phase under cProfile, stats to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--json", type=Path, help="also write every figure to FILE as JSON")
    parser.add_argument("--as-installed", nargs=2, metavar=("START", "END"), help=argparse.SUPPRESS)  # phase a's child
    return parser.parse_args(argv)


def measure_all(workload: Workload, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Phases a to e of the module docstring, in order, each on a restored target."""
    results: dict[str, Any] = {}
    print("a. truesync, PostgreSQL store", flush=True)
    results["truesync_postgres"] = truesync_phase(workload, "postgres", args.profile)
    print_truesync("truesync, PostgreSQL store", results["truesync_postgres"])
    restore_target(workload)
    print("a2. truesync again, PostgreSQL store holding a's ledger, the target rolled back", flush=True)
    results["truesync_rolled_back"] = truesync_phase(workload, "postgres", None, ROLLED_BACK)
    print_truesync("truesync, target rolled back", results["truesync_rolled_back"])
    restore_target(workload)
    print("b. truesync, SQLite store", flush=True)
    results["truesync_sqlite"] = truesync_phase(workload, "sqlite", None)
    print_truesync("truesync, SQLite store", results["truesync_sqlite"])
    restore_target(workload)
    print("c. PostgreSQL COPY + INSERT … ON CONFLICT DO UPDATE", flush=True)
    results["pg_upsert"] = pg_upsert(workload)
    check_results(workload)
    print(f"  {json.dumps({k: v for k, v in results['pg_upsert'].items()})}", flush=True)
    print(f"a'. a's run as installed: a fresh store, a child process that cannot import {BENCH_ONLY}", flush=True)
    results["truesync_as_installed"] = as_installed_phase(workload)
    print_truesync("truesync as installed", results["truesync_as_installed"])
    if args.skip_dlt:
        print("d. dlt: skipped (--skip-dlt)")
    else:
        results["dlt"] = dlt_phase(workload, work)
    if not args.skip_sqlite_sandbox:
        print("e. SQLite sandbox (bench/sync_bench.py)", flush=True)
        results["sandbox"] = run_sandbox()
    return results


def truesync_phase(workload: Workload, store: str, profile: Path | None, case: str = FIRST) -> dict[str, Any]:
    result = run_truesync(workload.window, store, profile, tag="" if case == FIRST else f"-{case}")
    store_at = workload.databases.store if store == "postgres" else store_url_now()
    return checked(workload, result, store_at, case)


def checked(workload: Workload, result: dict[str, Any], store_at: URL, case: str = FIRST) -> dict[str, Any]:
    """``result`` with its classes and the target checked (``check_run``, ``check_results``)."""
    result["class_outcomes"] = check_run(workload, result, store_at, case)
    result["target_check"] = check_results(workload)
    print(f"  classes {result['class_outcomes']}, target equals source on {result['target_check']['compared']:,} keys")
    return result


def as_installed_phase(workload: Workload) -> dict[str, Any]:
    """Phase a', a's first run on a fresh store and a restored target, in a child process that cannot
    import ``BENCH_ONLY``: what the run costs as requirements.txt installs truesync.
    """
    store = workload.databases.store
    execute(store.set(database="postgres"), *fresh_database(store), autocommit=True)
    restore_target(workload)
    start, end = (bound.isoformat() for bound in workload.window)
    command = as_installed(Path(__file__).resolve(), "--as-installed", start, end)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"phase a' failed with exit code {done.returncode}: {done.stderr[-4000:]}")
    return checked(workload, json.loads(done.stdout.splitlines()[-1]), store)


def run_as_installed(start: str, end: str) -> dict[str, Any]:
    """Inside phase a's child: the run, and which of ``BENCH_ONLY`` the child could import after it
    (none, or the phase measured the wrong thing).
    """
    warm_imports()
    result = run_truesync((datetime.fromisoformat(start), datetime.fromisoformat(end)), "postgres")
    return {**result, "bench_only_importable": bench_only_importable()}


def as_installed(script: Path, *args: str) -> list[str]:
    """The command that runs ``script`` with ``args`` in a Python that cannot import ``BENCH_ONLY``."""
    return [sys.executable, "-c", WITHOUT_BENCH_ONLY, str(script), *args]


def bench_only_importable() -> list[str]:
    """Which of ``BENCH_ONLY`` this process can import (imports them)."""
    found = []
    for name in BENCH_ONLY:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        found.append(name)
    return found


def store_url_now() -> URL:
    from truesync.support.paths import state_dir

    return make_url(f"sqlite:///{state_dir() / 'truesync.db'}")


def dlt_phase(workload: Workload, work: Path) -> dict[str, Any] | None:
    took = import_dlt()
    if took is None:
        print("d. dlt: skipped, not installed (pip install -r bench/requirements.txt -c constraints.txt)")
        return None
    print(f"d. dlt sql_table -> postgres merge (import {took:.1f} s, not counted)", flush=True)
    prepare_dlt(workload)
    result = run_dlt(workload, work / "dlt")
    print(f"  {json.dumps(result)}", flush=True)
    return result


def print_ratios(results: dict[str, Any]) -> None:
    ts, upsert = results["truesync_postgres"], results["pg_upsert"]
    if results.get("dlt"):
        to_dlt = ratio(ts["records_per_s"], results["dlt"]["records_per_s"])
        print(f"truesync (PostgreSQL store) / dlt records/s: {to_dlt} (aim >= 1.0, 2.0 hoped for)")
    alone, copied = (
        ratio(ts["stages"]["load"], upsert["upsert_seconds"]),
        ratio(ts["stages"]["load"], upsert["wall_seconds"]),
    )
    print(f"truesync load stage / PostgreSQL upsert: {alone} (aim <= 2.0); / COPY + upsert: {copied}")
    installed = results["truesync_as_installed"]["peak_rss_mib"]
    print(f"truesync peak RSS: {installed} MiB as installed, {ts['peak_rss_mib']} MiB with pyarrow (aim < 400)")
    if results.get("sandbox"):
        first = results["sandbox"]["runs"][0]
        rate, slowdown = first["total_records_per_s"], results["sandbox"]["slowdown"]
        print(f"SQLite sandbox: {rate:,} records/s (aim >= 30,000), {slowdown}x for 10x tables (aim <= 1.5)")


def commit() -> str:
    """The commit measured, marked when the engine (``include/``) has uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=BENCH_DIR, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    head = git("log", "-1", "--format=%h") or "unknown"
    return f"{head} + uncommitted changes in include/" if git("status", "--porcelain", "--", "../include") else head


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.as_installed:
        print(json.dumps(run_as_installed(*args.as_installed), default=str))
        return 0
    databases = Databases.on_server(args.server)
    with tempfile.TemporaryDirectory(prefix="truesync-anchor-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("AIRFLOW_HOME", str(work / "airflow"))  # nothing here may touch ~/airflow
        print(f"commit {commit()}; imports (not counted): {warm_imports()}", flush=True)
        create_databases(args.server, databases)
        try:
            results = run_anchor(args, databases, work)
        finally:
            if not args.keep:
                drop_databases(args.server, databases)
    print(f"commit at the end: {results['workload']['commit']}")
    print_ratios(results)
    print_table(summary_rows(results))
    if args.json:
        args.json.write_text(json.dumps(without_reports(results), indent=2, default=str))
    return 0


def run_anchor(args: argparse.Namespace, databases: Databases, work: Path) -> dict[str, Any]:
    began = time.perf_counter()
    workload = generate(args.rows, args.seed, databases)
    print(f"generated {args.rows:,} rows in {time.perf_counter() - began:.1f} s {workload.timings}", flush=True)
    print(describe(workload), flush=True)
    os.environ.update(write_config(workload, work / "config"))
    print(f"config {work / 'config'}: chunk_size {CHUNK_SIZE:,}, partition_size {PARTITION_SIZE:,}", flush=True)
    results = measure_all(workload, args, work)
    results["workload"] = {"rows": args.rows, "delta": workload.delta, "seed": args.seed, "commit": commit()}
    return results


def describe(workload: Workload) -> str:
    counts = f"{len(workload.updated):,} updated, {len(workload.inserted):,} new, {len(workload.deleted):,} deleted"
    return f"delta {workload.delta:,} ({counts}); window {workload.window_start} .. {workload.window_end}"


def pg_figures(result: dict[str, Any]) -> list[Any]:
    """Wall time, records/s, peak RSS and CPU time of a measured phase, as the summary shows them."""
    cpu = f"{result['cpu_seconds']['python']} + {result['cpu_seconds']['postgresql']}"
    return [result["wall_seconds"], result["records_per_s"], result["peak_rss_mib"], cpu]


def without_reports(results: dict[str, Any]) -> dict[str, Any]:
    return {
        k: {kk: vv for kk, vv in v.items() if kk != "report"} if isinstance(v, dict) else v for k, v in results.items()
    }


if __name__ == "__main__":
    sys.exit(main())
