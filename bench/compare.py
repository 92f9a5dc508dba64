"""The full-compare benchmark (issue #11): truesync's compare next to reladiff's hashdiff.

What it measures, in one script and one session, each measurement in a fresh child process
of this script (so every peak RSS is that process's own, ``VmHWM``, imports included; truesync's
children cannot import what ``bench/requirements.txt`` adds, as in an install from requirements.txt):

a. a first compare, with no ledger: ``truesync.pipeline.compare.run_compare`` of the bench
   flow on an empty store, repairing what the flow's rules allow;
b. a compare after a sync, with a ledger: the tables are rebuilt, an incremental sync
   (``truesync.pipeline.runner.run_flow``, window 1970-01-01 .. the drift day) writes the
   ledger of every row, a fresh drift is made, then the same compare;
b2. a compare after the drift day's sync, the weekly case (``--cases synced``): as b, and before the
   compare an incremental sync of the drift day (its window widened by the flow's lookback) writes
   the source's updates and inserts, so the compare finds only what no change time shows: the
   source's deletes and the target's edits;
c. before each truesync compare, reladiff's hashdiff (``reladiff.diff_tables``, algorithm
   ``HASHDIFF``, its defaults: bisection factor 32, threshold 16,384 rows) on the same two
   tables, same key, same compared columns, once per ``--reladiff-threads`` value (connections
   per database and pool size; 1 is reladiff's default): the ratio is to the fastest; after
   each truesync compare, reladiff again, to check what the repair left;
d. the SQLite sandbox at ``--sqlite-scale`` customers (``truesync sandbox init --scale N``):
   the ``webshop_to_crm`` compare on a fresh store, then on a restored sandbox after a sync
   of all its days.

Time is the wall time of the call alone (imports, the store's migration and connecting to
the store come before the clock; reladiff's connections are inside it); client CPU is the
child's own user + system time over the same span (the rest is the databases' work).

The data. Three databases on one server (``--server``, default the local PostgreSQL):

- ``ts_compare_source``: ``orders`` (``o_orderkey`` bigint primary key, ``o_custkey``,
  ``o_orderstatus`` F/O/P, ``o_totalprice`` numeric(15,2), ``o_orderdate`` date, ``o_clerk``,
  ``o_comment``, change time ``updated_at``; index ``(updated_at, o_orderkey)``), ``--rows``
  TPC-H-shaped rows made by numpy and COPYed (``bench/anchor.py``'s generator), all changed
  in the 30 days before the drift day (2026-11-01), kept aside as ``orders_base``;
- ``ts_compare_target``: the identical table (names, types, keys, rows) and its own
  ``orders_base``; both ``orders`` tables are rebuilt from ``orders_base`` before each case;
- ``ts_compare_store``: truesync's store, dropped and made again for each case.

The drift of a case, on the drift day: 10% of the source rows updated (total raised, comment
revised, open orders finished, a change time on the drift day), 1% inserted, 0.5% deleted;
in the target 0.1% of other rows edited (comment) with their change time kept. Case b's
drift draws other keys than case a's. reladiff must find, and truesync's compare classify:
updated + edited keys that differ, inserted keys only in the source, deleted keys only in
the target (after the drift day's sync, only the edited and the deleted keys). The bench
flow owns every field at the source and deletes what the source deleted
(``compare.deletes: {order: delete}``; 0.5% is under the 1% guard); without a ledger those keys
are ``target_only`` and only reported.

The configuration is written to a temporary directory (``TRUESYNC_CONFIG_DIR``): one entity
``order``, the key and 6 fields and no user expectations, ``chunk_size: 20000`` (at 50,000 the
compares took as long and held 100-160 MiB more), ``partition_size: 10000000``; connections as
``AIRFLOW_CONN_<ID>`` variables.

    .venv/bin/pip install -r bench/requirements.txt -c constraints.txt   # reladiff (and dlt)
    python bench/compare.py [--rows 1500000] [--cases first ledger synced] [--sqlite-scale 1000000]
                            [--skip-sqlite-sandbox] [--reladiff-threads 1 2] [--profile PREFIX]
                            [--server URL] [--seed N] [--keep] [--json FILE]

``--profile PREFIX`` runs each truesync compare under cProfile and writes
``PREFIX-<case>.prof`` (``first``, ``ledger``, ``synced``) (the figures then include the profiler's
cost); ``python -m pstats`` reads them. ``--keep`` leaves the databases in place.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sqlalchemy.engine import URL, make_url

BENCH_DIR = Path(__file__).resolve().parent
DATABASES = ("ts_compare_source", "ts_compare_target", "ts_compare_store")
FLOW, ENTITY = "compare_bench", "order"
SOURCE_SYSTEM, TARGET_SYSTEM = "compare_source", "compare_target"
SANDBOX_FLOW = "webshop_to_crm"
CHUNK_SIZE, PARTITION_SIZE = 20_000, 10_000_000
EPOCH = datetime(1970, 1, 1)
LOOKBACK = timedelta(hours=2)  # the bench flow's lookback: a daily run's window starts this much earlier
KEY = "o_orderkey"
# canonical field -> column, the same on both sides; the key first
FIELDS = {
    "order_id": KEY,
    "customer_id": "o_custkey",
    "status": "o_orderstatus",
    "total": "o_totalprice",
    "order_date": "o_orderdate",
    "clerk": "o_clerk",
    "comment": "o_comment",
}
COMPARED = list(FIELDS.values())[1:]
COLUMNS = [*FIELDS.values(), "updated_at"]
BASE_DDL = """
CREATE TABLE orders_base (
    o_orderkey bigint NOT NULL, o_custkey bigint NOT NULL, o_orderstatus char(1) NOT NULL,
    o_totalprice numeric(15,2) NOT NULL, o_orderdate date NOT NULL, o_clerk varchar(15) NOT NULL,
    o_comment varchar(79) NOT NULL, updated_at timestamp NOT NULL)
"""


def load_anchor() -> ModuleType:
    """``bench/anchor.py`` as a module (``bench`` is not a package): its generator, COPY and phase helpers."""
    spec = importlib.util.spec_from_file_location("anchor", BENCH_DIR / "anchor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


anchor = load_anchor()


def bench_databases(server: URL | str) -> Any:
    """The source, target and store databases of the bench on ``server`` (an ``anchor.Databases``)."""
    base = make_url(server)
    return anchor.Databases(*(base.set(database=name) for name in DATABASES))


# ---------------------------------------------------------------- the tables and the drift


def generate(rows: int, seed: int, databases: Any) -> None:
    """``orders_base`` in the source (numpy + COPY) and an identical copy in the target."""
    frame = anchor.orders_frame(
        anchor.order_keys(0, rows), np.random.default_rng(seed), anchor.DRIFT_DAY - timedelta(days=30), 29 * 86_400
    )[COLUMNS]
    with anchor.pg(databases.source) as conn, conn.cursor() as cur:
        cur.execute(BASE_DDL)
        anchor.copy_frame(cur, "orders_base", COLUMNS, frame)
    anchor.execute(databases.target, BASE_DDL)
    copy_in = f"COPY orders_base ({', '.join(COLUMNS)}) FROM STDIN"
    anchor.transfer(databases.source, f"SELECT {', '.join(COLUMNS)} FROM orders_base", (), databases.target, copy_in)


def rebuild(databases: Any) -> None:
    """Both ``orders`` tables as ``orders_base``, keyed and indexed: every case starts from equal tables."""
    for url in (databases.source, databases.target):
        anchor.execute(
            url,
            "DROP TABLE IF EXISTS orders",
            "CREATE TABLE orders AS SELECT * FROM orders_base",
            f"ALTER TABLE orders ADD PRIMARY KEY ({KEY})",
            f"CREATE INDEX orders_updated_at_key ON orders (updated_at, {KEY})",
        )


@dataclass(frozen=True)
class Drift:
    """The keys one drift touched: source updates, inserts and deletes, target edits (change time kept)."""

    updated: np.ndarray
    inserted: np.ndarray
    deleted: np.ndarray
    edited: np.ndarray

    def differences(self, synced: bool = False) -> dict[str, int]:
        """What a diff of the two tables must find, by reladiff's three kinds; ``synced``: after an
        incremental sync of the drift day, which wrote the source's updates and inserts."""
        return {
            "differ": (0 if synced else len(self.updated)) + len(self.edited),
            "source_only": 0 if synced else len(self.inserted),
            "target_only": len(self.deleted),
        }

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items()}


def drift(rows: int, rng: np.random.Generator, databases: Any) -> Drift:
    """Update 10%, insert 1%, delete 0.5% of the source on the drift day; edit 0.1% of other target rows."""
    keys = anchor.order_keys(0, rows)
    order = rng.permutation(rows)
    n_updated, n_deleted, n_edited = rows // 10, rows // 200, rows // 1000
    picked = np.split(keys[order[: n_updated + n_deleted + n_edited]], [n_updated, n_updated + n_deleted])
    updated, deleted, edited = (np.sort(k) for k in picked)
    new = anchor.orders_frame(anchor.order_keys(rows, rows // 100), rng, anchor.DRIFT_DAY, 86_400)[COLUMNS]
    day = np.datetime64(anchor.DRIFT_DAY, "us")
    changes = pd.DataFrame(
        {
            "k": updated,
            "ts": day + rng.integers(0, 86_400_000_000, n_updated).astype("timedelta64[us]"),
            "bump": rng.integers(1, 10_000, n_updated) / 100,
        }
    )
    with anchor.pg(databases.source) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE drift (k bigint PRIMARY KEY, ts timestamp, bump numeric(15,2))")
        anchor.copy_frame(cur, "drift", ["k", "ts", "bump"], changes)
        cur.execute(
            "UPDATE orders o SET o_totalprice = o.o_totalprice + d.bump,"
            " o_comment = left(o.o_comment, 60) || ' revised',"
            " o_orderstatus = CASE WHEN o.o_orderstatus = 'O' THEN 'F' ELSE o.o_orderstatus END,"
            f" updated_at = d.ts FROM drift d WHERE o.{KEY} = d.k"
        )
        delete_keys(cur, deleted)
        anchor.copy_frame(cur, "orders", COLUMNS, new)
    with anchor.pg(databases.target) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE edit (k bigint PRIMARY KEY)")
        anchor.copy_frame(cur, "edit", ["k"], pd.DataFrame({"k": edited}))
        edit = "o_comment = left(o.o_comment, 50) || ' edited in target'"
        cur.execute(f"UPDATE orders o SET {edit} FROM edit e WHERE o.{KEY} = e.k")
    for url in (databases.source, databases.target):
        anchor.execute(url, "VACUUM ANALYZE orders", autocommit=True)
    return Drift(updated, new[KEY].to_numpy(), deleted, edited)


def delete_keys(cur: Any, keys: np.ndarray) -> None:
    cur.execute("CREATE TEMP TABLE gone (k bigint PRIMARY KEY)")
    anchor.copy_frame(cur, "gone", ["k"], pd.DataFrame({"k": keys}))
    cur.execute(f"DELETE FROM orders o USING gone g WHERE o.{KEY} = g.k")


def fresh_store(server: URL | str, databases: Any) -> None:
    """Drop and create the store database: a case starts with no ledger and no watermark."""
    anchor.execute(make_url(server), *anchor.fresh_database(databases.store), autocommit=True)


# ---------------------------------------------------------------- the truesync configuration


def write_config(databases: Any, directory: Path) -> dict[str, str]:
    """The bench's four YAML files in ``directory``; returns the environment a user would set."""
    directory.mkdir(parents=True, exist_ok=True)
    mapping = {"table": "orders", "key": KEY, "cursor": "updated_at", "fields": dict(FIELDS)}
    documents = {
        "systems": {
            SOURCE_SYSTEM: {"kind": "sql", "connection": "ts_compare_source", "description": "TPC-H orders"},
            TARGET_SYSTEM: {"kind": "sql", "connection": "ts_compare_target", "description": "copy of the orders"},
        },
        "entities": {ENTITY: entity_config()},
        "mappings": {
            system: {"version": 1, "entities": {ENTITY: mapping}} for system in (SOURCE_SYSTEM, TARGET_SYSTEM)
        },
        "flows": {FLOW: flow_config()},
    }
    for name, body in documents.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump({name: body}, sort_keys=False))
    return {
        "TRUESYNC_CONFIG_DIR": str(directory),
        "TRUESYNC_STATE_DIR": str(directory.parent / "state"),
        "AIRFLOW_CONN_TS_COMPARE_SOURCE": databases.source.render_as_string(hide_password=False),
        "AIRFLOW_CONN_TS_COMPARE_TARGET": databases.target.render_as_string(hide_password=False),
        "AIRFLOW_CONN_TRUESYNC_STORE": databases.store.render_as_string(hide_password=False),
    }


def entity_config() -> dict[str, Any]:
    fields = anchor.entity_config()["fields"]
    return {"key": "order_id", "fields": {name: fields[name] for name in FIELDS}}


def flow_config() -> dict[str, Any]:
    return {
        "source": SOURCE_SYSTEM,
        "target": TARGET_SYSTEM,
        "entities": [ENTITY],
        "description": "The full-compare benchmark (bench/compare.py).",
        "lookback": f"{LOOKBACK.seconds // 3600}h",
        "freshness_sla": "1d",
        "chunk_size": CHUNK_SIZE,
        "partition_size": PARTITION_SIZE,
        "ownership": {ENTITY: {"*": SOURCE_SYSTEM}},
        "compare": {"max_delete_share": 0.01, "deletes": {ENTITY: "delete"}},
    }


# ---------------------------------------------------------------- the children: one measurement each


@contextmanager
def measured(into: dict[str, Any], profile: str | None = None) -> Iterator[None]:
    """Wall time, client CPU and RSS of a block into ``into``; ``profile``: cProfile stats to that file."""
    profiler = cProfile.Profile() if profile else None
    start_rss, cpu = anchor.rss_bytes(), cpu_seconds()
    began = time.perf_counter()
    if profiler:
        profiler.enable()
    yield
    if profiler:
        profiler.disable()
    into["wall_seconds"] = round(time.perf_counter() - began, 3)
    into["client_cpu_seconds"] = round(cpu_seconds() - cpu, 3)
    into["start_rss_mib"] = round(start_rss / 2**20, 1)
    into["peak_rss_mib"] = peak_rss_mib()
    if profiler and profile:
        profiler.dump_stats(profile)


def peak_rss_mib() -> float:
    """This process's peak RSS since it started (``VmHWM``); ``ru_maxrss`` would start from the parent's RSS at fork."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 1024, 1)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reladiff_child(source: str, target: str, threads: int) -> dict[str, Any]:
    """reladiff's hashdiff of the two ``orders`` tables; the differing keys by kind."""
    from reladiff import Algorithm, connect_to_table, diff_tables

    result: dict[str, Any] = {"threads": threads}
    signs: dict[str, set[Any]] = {"-": set(), "+": set()}
    with measured(result):
        tables = [
            connect_to_table(url, "orders", KEY, thread_count=threads, extra_columns=tuple(COMPARED))
            for url in (source, target)
        ]
        with diff_tables(*tables, algorithm=Algorithm.HASHDIFF, max_threadpool_size=threads) as diff:
            for sign, row in diff:
                signs[sign].add(row[0])
        for table in tables:
            table.database.close()
    minus, plus = signs["-"], signs["+"]
    differences = {"differ": len(minus & plus), "source_only": len(minus - plus), "target_only": len(plus - minus)}
    return {**result, "keys_differing": len(minus | plus), "differences": differences}


def compare_child(flow: str, profile: str | None) -> dict[str, Any]:
    """One ``run_compare`` of ``flow``: its figures, and per entity the keys, classes, outcomes and quiet drift."""
    anchor.warm_imports()
    from truesync.config import load_config
    from truesync.pipeline.compare import run_compare
    from truesync.store import Store

    config, store = load_config(), Store()  # the truesync_store connection, else the state dir's SQLite file
    result: dict[str, Any] = {}
    with measured(result, profile):
        report = run_compare(config, store, flow, f"{flow}:compare-{time.time_ns()}")
    return {**result, "status": report["status"], "entities": entity_figures(report)}


def sync_child(flow: str, end: str, start: str = EPOCH.isoformat()) -> dict[str, Any]:
    """One incremental run of ``flow`` over [start, end): the ledger a later compare reads."""
    anchor.warm_imports()
    from truesync.config import load_config
    from truesync.pipeline.runner import run_flow
    from truesync.pipeline.window import Window
    from truesync.store import Store

    config, store = load_config(), Store()
    result: dict[str, Any] = {}
    with measured(result):
        report = run_flow(
            config,
            store,
            flow,
            f"{flow}:sync-{time.time_ns()}",
            Window(datetime.fromisoformat(start), datetime.fromisoformat(end)),
        )
    return {**result, "status": report["status"], "entities": entity_figures(report)}


def entity_figures(report: dict[str, Any]) -> dict[str, Any]:
    """Per entity of a run report: keys, non-zero classes and outcomes, conservation and quiet drift counts."""
    quiet = report.get("quiet_drift") or {}
    return {
        name: {
            "keys": entity["extracted"],
            "classes": nonzero(entity["classes"]),
            "outcomes": nonzero(entity["outcomes"]),
            "conserved": entity["conserved"],
            "quiet": nonzero((quiet.get(name) or {}).get("counts") or {}),
            "durations": entity["durations"],
        }
        for name, entity in report["entities"].items()
    }


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def sandbox_init_child(scale: str) -> dict[str, Any]:
    """``truesync sandbox init --scale N`` in this child's state directory."""
    from truesync.cli import main

    result: dict[str, Any] = {"scale": int(scale)}
    with measured(result):
        code = main(["sandbox", "init", "--scale", scale])
    if code:
        raise RuntimeError(f"truesync sandbox init exited with {code}")
    return result


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "reladiff": lambda source, target, threads: reladiff_child(source, target, int(threads)),
    "compare": lambda flow, profile="": compare_child(flow, profile or None),
    "sync": sync_child,
    "sandbox-init": sandbox_init_child,
}


def child(kind: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """This script in a fresh process for one measurement; its JSON result (the last line it prints).

    truesync's children cannot import the packages ``bench/requirements.txt`` adds (``anchor.BENCH_ONLY``),
    so they hold what an install from requirements.txt holds; reladiff's child is left as installed.
    """
    arguments = ("--child", kind, *args)
    if kind == "reladiff":
        command = [sys.executable, __file__, *arguments]
    else:
        command = anchor.as_installed(Path(__file__), *arguments)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed with exit code {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the cases


def run_case(name: str, args: argparse.Namespace, databases: Any, rng: np.random.Generator) -> dict[str, Any]:
    """One case on rebuilt tables and a fresh store: ``first`` compares at once, ``ledger`` syncs first,
    ``synced`` syncs first and syncs the drift day's delta before it compares."""
    rebuild(databases)
    fresh_store(args.server, databases)
    case: dict[str, Any] = {}
    if name in ("ledger", "synced"):
        case["sync"] = child("sync", FLOW, anchor.DRIFT_DAY.isoformat())
        print(f"  sync before the drift: {case['sync']['wall_seconds']:.1f} s, {case['sync']['entities']}", flush=True)
    made = drift(args.rows, rng, databases)
    case["drift"] = made.counts()
    print(f"  drift {case['drift']}", flush=True)
    if name == "synced":
        day = (anchor.DRIFT_DAY - LOOKBACK, anchor.DRIFT_DAY + timedelta(days=1))
        case["catch_up"] = child("sync", FLOW, day[1].isoformat(), day[0].isoformat())
        print(f"  sync of the drift day: {brief(case['catch_up'])}, {case['catch_up']['entities']}", flush=True)
    urls = [anchor.dsn(url) for url in (databases.source, databases.target)]
    case["reladiff_runs"] = []
    for threads in args.reladiff_threads:
        case["reladiff_runs"].append(child("reladiff", *urls, str(threads)))
        run = case["reladiff_runs"][-1]
        print(f"  reladiff, {threads} thread(s): {brief(run)}, {run['differences']}", flush=True)
    case["reladiff"] = min(case["reladiff_runs"], key=lambda run: run["wall_seconds"])
    profile = f"{args.profile}-{name}.prof" if args.profile else ""
    case["truesync"] = child("compare", FLOW, profile)
    print(f"  truesync: {brief(case['truesync'])}, {case['truesync']['entities'][ENTITY]}", flush=True)
    case["after"] = child("reladiff", *urls, str(case["reladiff"]["threads"]))
    print(f"  reladiff after the repair: {brief(case['after'])}, {case['after']['differences']}", flush=True)
    case["checks"] = check_case(name, args.rows, made, case)
    for problem in case["checks"]:
        print(f"  CHECK FAILED: {problem}", flush=True)
    return case


def brief(result: dict[str, Any]) -> str:
    figures = (result["wall_seconds"], result["client_cpu_seconds"], result["peak_rss_mib"])
    return "{:.2f} s (client CPU {:.2f} s), peak RSS {} MiB".format(*figures)


def check_case(name: str, rows: int, made: Drift, case: dict[str, Any]) -> list[str]:
    """What failed of: reladiff found the drift as made, truesync compared every key (S and T) and
    conserved them (after the drift day's sync: classified exactly the target's edits and the source's
    deletes, all quiet), and the repair left only what the flow's rules leave (the target-only keys,
    reported, when there is no ledger; nothing with one)."""
    problems, expected = [], made.differences(synced=name == "synced")
    if case["reladiff"]["differences"] != expected:
        problems.append(f"reladiff found {case['reladiff']['differences']}, the drift left {expected}")
    entity = case["truesync"]["entities"][ENTITY]
    keys = rows + len(made.inserted)
    if entity["keys"] != keys:
        problems.append(f"truesync compared {entity['keys']:,} keys, the tables hold {keys:,}")
    if not entity["conserved"]:
        problems.append("truesync's counts are not conserved")
    if name == "synced":  # only what no change time shows is left, all of it quiet
        quiet = {"overwritten": len(made.edited), "deleted": len(made.deleted)}
        classes = {"in_sync": keys - sum(quiet.values()), **quiet}
        if entity["classes"] != classes or entity["quiet"] != quiet:
            problems.append(f"truesync classified {entity['classes']}, quiet {entity['quiet']}; expected {classes}")
    left = {"differ": 0, "source_only": 0, "target_only": len(made.deleted) if name == "first" else 0}
    if case["after"]["differences"] != left:
        problems.append(f"after the repair reladiff finds {case['after']['differences']}, expected {left}")
    return problems


# ---------------------------------------------------------------- the SQLite sandbox


def sandbox_env(directory: Path) -> dict[str, str]:
    """The sandbox's own connections (``sandbox.local_connections``: every system a SQLite file) and its
    default SQLite store under ``directory``, nothing of the bench flow."""
    from truesync.sandbox import systems as sandbox

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRUESYNC_", "AIRFLOW_CONN_"))}
    env["TRUESYNC_STATE_DIR"] = str(directory / "state")
    return env | sandbox.local_connections(directory / "state")


def run_sandbox(scale: int, directory: Path) -> dict[str, Any]:
    """The sandbox at ``scale`` customers: a compare on a fresh store, then on a restored sandbox after a sync."""
    from truesync.sandbox import DEMO_DAYS, DEMO_START

    env, systems = sandbox_env(directory), directory / "state" / "sandbox"
    systems.mkdir(parents=True)
    result = {"init": child("sandbox-init", str(scale), env=env)}
    print(f"  sandbox init --scale {scale:,}: {result['init']['wall_seconds']:.1f} s", flush=True)
    pristine = directory / "systems-pristine"
    shutil.copytree(systems, pristine)
    result["first"] = child("compare", SANDBOX_FLOW, env=env)
    print(f"  first compare: {brief(result['first'])}, {result['first']['entities']}", flush=True)
    shutil.rmtree(systems)
    shutil.copytree(pristine, systems)
    for store in (directory / "state").glob("truesync.db*"):
        store.unlink()
    end = datetime.combine(DEMO_START, datetime.min.time()) + timedelta(days=DEMO_DAYS)
    result["sync"] = child("sync", SANDBOX_FLOW, end.isoformat(), env=env)
    print(f"  sync of all days: {brief(result['sync'])}", flush=True)
    result["ledger"] = child("compare", SANDBOX_FLOW, env=env)
    print(f"  compare after the sync: {brief(result['ledger'])}, {result['ledger']['entities']}", flush=True)
    return result


# ---------------------------------------------------------------- the table


HEADER = ["what", "keys", "wall s", "client CPU s", "peak RSS MiB", "truesync / reladiff", "aim"]
CASES = {
    "first": "first compare, no ledger",
    "ledger": "compare after a sync, with a ledger",
    "synced": "compare after the drift day's sync",
}
SANDBOX_CASES = ("first", "ledger")


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per measurement: the two tools per case, the checks after the repair, the sandbox."""
    rows: list[list[Any]] = []
    for name, title in CASES.items():
        case = results.get(name)
        if not case:
            continue
        ts, rd = case["truesync"], case["reladiff"]
        keys = ts["entities"][ENTITY]["keys"]
        to_reladiff = anchor.ratio(ts["wall_seconds"], rd["wall_seconds"])
        for run in case["reladiff_runs"]:
            fastest = "fastest" if run is rd else ""
            rows.append([f"{title}: reladiff hashdiff, {run['threads']} thread(s)", keys, *figures(run), None, fastest])
        rows.append([f"{title}: truesync compare", keys, *figures(ts), to_reladiff, "<= 0.5; RSS < 400 MiB"])
        rows.append(
            [
                f"  reladiff after the repair ({case['after']['keys_differing']:,} differ)",
                keys,
                *figures(case["after"]),
                None,
                "check",
            ]
        )
    sandbox = results.get("sandbox")
    if sandbox:
        for name in SANDBOX_CASES:
            title = CASES[name]
            keys = sum(e["keys"] for e in sandbox[name]["entities"].values())
            scale = sandbox["init"]["scale"]
            rows.append([f"SQLite sandbox {scale:,}: {title}", keys, *figures(sandbox[name]), None, "RSS < 400 MiB"])
    return [["" if v is None else f"{v:,}" if isinstance(v, int | float) else str(v) for v in row] for row in rows]


def figures(result: dict[str, Any]) -> list[Any]:
    return [result["wall_seconds"], result["client_cpu_seconds"], result["peak_rss_mib"]]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for row in [HEADER, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)) + " |")


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_500_000, help="rows of each table before the drift")
    parser.add_argument("--seed", type=int, default=11)
    server = os.environ.get("TRUESYNC_BENCH_POSTGRES_URL") or anchor.DEFAULT_SERVER
    parser.add_argument("--server", default=server, help="PostgreSQL server URL (any database on it)")
    parser.add_argument(
        "--reladiff-threads", type=int, nargs="+", default=[1, 2], help="reladiff's connections per database, each run"
    )
    parser.add_argument(
        "--cases", nargs="+", choices=list(CASES), default=list(CASES), help="the PostgreSQL cases to run, in order"
    )
    parser.add_argument("--sqlite-scale", type=int, default=1_000_000, help="customers of the SQLite sandbox")
    parser.add_argument("--skip-sqlite-sandbox", action="store_true", help="leave out the sandbox (minutes)")
    parser.add_argument("--profile", help="run truesync's compares under cProfile, stats to PREFIX-<case>.prof")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--json", type=Path, help="also write every figure to FILE as JSON")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        result = CHILDREN[args.child[0]](*args.child[1:])
        print(json.dumps({**result, "bench_only_importable": anchor.bench_only_importable()}))
        return 0
    if importlib.util.find_spec("reladiff") is None:
        print("reladiff is not installed: .venv/bin/pip install -r bench/requirements.txt -c constraints.txt")
        return 2
    databases = bench_databases(args.server)
    with tempfile.TemporaryDirectory(prefix="truesync-compare-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("AIRFLOW_HOME", str(work / "airflow"))  # nothing here may touch ~/airflow
        print(f"commit {anchor.commit()}", flush=True)
        anchor.create_databases(args.server, databases)
        try:
            results = run_bench(args, databases, work)
        finally:
            if not args.keep:
                anchor.drop_databases(args.server, databases)
    print_table(summary_rows(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 1 if any(results[name]["checks"] for name in args.cases) else 0


def run_bench(args: argparse.Namespace, databases: Any, work: Path) -> dict[str, Any]:
    """Generate, then case a, case b and the sandbox in order."""
    results: dict[str, Any] = {"rows": args.rows, "seed": args.seed, "commit": anchor.commit()}
    began = time.perf_counter()
    generate(args.rows, args.seed, databases)
    print(f"generated {args.rows:,} rows in {time.perf_counter() - began:.1f} s", flush=True)
    os.environ.update(write_config(databases, work / "config"))
    rng = np.random.default_rng(args.seed + 1)
    for name in args.cases:
        print(f"{CASES[name]}:", flush=True)
        results[name] = run_case(name, args, databases, rng)
    if not args.skip_sqlite_sandbox:
        print(f"SQLite sandbox at {args.sqlite_scale:,} customers:", flush=True)
        results["sandbox"] = run_sandbox(args.sqlite_scale, work / "sandbox")
    return results


if __name__ == "__main__":
    sys.exit(main())
