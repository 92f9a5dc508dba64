"""The anchor delta through a real Airflow (issue #10, last measurement): Airflow's overhead and the partition speed-up.

The workload, configuration and checks are ``bench/anchor.py``'s (loaded from its path): a
TPC-H-shaped ``orders`` table in ``ts_anchor_source``, its pre-drift copy in
``ts_anchor_target``, truesync's store in ``ts_anchor_store``, one day's drift (2026-11-01).
Then the ``truesync_anchor`` DAG (``dags/truesync_flows.py``) runs as an ``airflow backfill
create`` of that one daily interval, executed by a real scheduler (``LocalAirflow``:
api-server, scheduler, dag-processor) with the LocalExecutor on 2 parallel slots
(``AIRFLOW__CORE__PARALLELISM=2``, 2 active tasks per DAG) and its metadata in a PostgreSQL
database of its own (``ts_anchor_airflow``). Scheduled runs are off
(``AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=False``) so only the backfill runs. Two measurements,
each on a freshly restored target, a fresh store and a fresh Airflow (home and metadata DB):

1. ``partition_size`` larger than the delta: one ``sync`` task;
2. ``partition_size`` = ``--partition-size`` (default half the delta): >= 2 mapped ``sync``
   tasks sharing the 2 slots.

For each: the DAG run's wall time (``dag_run.start_date`` .. ``end_date`` in the metadata
DB); the engine stages from truesync's run report (``state/reports/anchor/*.json``,
``entities.order.durations``: extract, classify, load, each summed over the partitions); the
critical path of the engine (extract + the slowest partition's sync, from the store's
``ts_run_entity`` rows); the ``finalize`` task's duration (finalize is not in the report);
the Airflow overhead = wall - engine stage sum (and wall - critical path); and the speed-up of
run 2 over run 1. Each run's classes are checked as ``anchor.py`` does (updated rows
``delayed``, new rows ``missing``, conservation, the target equal to the source).

    python bench/anchor_airflow.py [--rows 300000] [--partition-size N] [--server URL] [--seed N] [--keep]

``--rows`` defaults to 300,000 so it finishes in a few minutes; 1,500,000 is the full anchor.
``--keep`` leaves the databases (source, target, store, Airflow metadata) in place.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from sqlalchemy.engine import URL, make_url

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
METADATA_DB = "ts_anchor_airflow"
INTERVAL = "2026-11-01"  # the drift day: the one daily interval backfilled


def load_anchor() -> ModuleType:
    """``bench/anchor.py`` as a module (``bench`` is not a package)."""
    spec = importlib.util.spec_from_file_location("anchor", BENCH_DIR / "anchor.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["anchor"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


anchor = load_anchor()
DAG_ID = f"truesync_{anchor.FLOW}"


# ---------------------------------------------------------------- set-up


def write_flow(config_dir: Path, partition_size: int) -> None:
    """Rewrite ``flows.yaml`` of the anchor configuration with another ``partition_size``."""
    body = {**anchor.flow_config(), "partition_size": partition_size}
    (config_dir / "flows.yaml").write_text(yaml.safe_dump({"flows": {anchor.FLOW: body}}, sort_keys=False))


def recreate_database(server: URL, name: str) -> URL:
    anchor.execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', autocommit=True)
    anchor.execute(server, f'CREATE DATABASE "{name}"', autocommit=True)
    return server.set(database=name)


def local_airflow(home: Path, metadata: URL) -> Any:
    from truesync.sandbox.localairflow import LocalAirflow

    shutil.rmtree(home, ignore_errors=True)
    extra = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata.render_as_string(hide_password=False),
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }
    return LocalAirflow(home, executor="LocalExecutor", extra_env=extra)


# ---------------------------------------------------------------- one measurement


def measure(workload: Any, server: URL, work: Path, label: str, partition_size: int) -> dict[str, Any]:
    """Restore the target, empty the store, start a fresh Airflow, backfill the interval, collect the figures."""
    print(f"== {label}: partition_size {partition_size:,} ==", flush=True)
    anchor.restore_target(workload)
    recreate_database(server, workload.databases.store.database)
    shutil.rmtree(work / "state", ignore_errors=True)
    write_flow(work / "config", partition_size)
    metadata = recreate_database(server, METADATA_DB)
    airflow = local_airflow(work / f"airflow-{label}", metadata)
    began = time.perf_counter()
    airflow.prepare([DAG_ID])
    airflow.start()
    print(f"  Airflow ready in {time.perf_counter() - began:.1f} s; backfilling {INTERVAL}", flush=True)
    try:
        airflow.backfill([DAG_ID], INTERVAL, INTERVAL)
        states = airflow.wait_for_backfills([DAG_ID], timeout=1800)
    finally:
        airflow.stop()
    assert [s for _, s, _ in states[DAG_ID]] == ["success"], states
    return collect(workload, metadata, states[DAG_ID][0][0], partition_size)


def collect(workload: Any, metadata: URL, dag_run_id: str, partition_size: int) -> dict[str, Any]:
    """The DAG run's times, its tasks, the run report and the checks of ``anchor.py``."""
    from truesync.reporting.report import report_path

    wall, tasks = dag_run_times(metadata, dag_run_id)
    run_id = f"{anchor.FLOW}:{dag_run_id}"
    report = json.loads(report_path(anchor.FLOW, run_id).read_text())
    classes = anchor.check_run(workload, {"report": report, "run_id": run_id}, workload.databases.store)
    target = anchor.check_results(workload)
    print(f"  classes {classes}, target equals source on {target['compared']:,} keys", flush=True)
    parts = partition_seconds(workload.databases.store, run_id)
    return figures(wall, tasks, report, parts, partition_size)


def dag_run_times(metadata: URL, dag_run_id: str) -> tuple[float, list[tuple[str, int, float]]]:
    """Wall seconds of the DAG run and (task id, map index, seconds) of its task instances."""
    with anchor.pg(metadata) as conn, conn.cursor() as cur:
        cur.execute("SELECT start_date, end_date FROM dag_run WHERE dag_id = %s AND run_id = %s", (DAG_ID, dag_run_id))
        start, end = cur.fetchone()
        cur.execute(
            "SELECT task_id, map_index, duration FROM task_instance WHERE dag_id = %s AND run_id = %s"
            " ORDER BY start_date",
            (DAG_ID, dag_run_id),
        )
        tasks = [(t, m, float(d or 0.0)) for t, m, d in cur.fetchall()]
    return seconds_between(start, end), tasks


def seconds_between(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)


def partition_seconds(store: URL, run_id: str) -> dict[str, float]:
    """Engine seconds per step of the run from the store (``extract`` and one row per sync partition)."""
    with anchor.pg(store) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT part, extract_seconds + sync_seconds FROM ts_run_entity WHERE run_id = %s AND entity = %s",
            (run_id, anchor.ENTITY),
        )
        return {part: float(seconds) for part, seconds in cur.fetchall()}


def figures(
    wall: float, tasks: list[tuple[str, int, float]], report: dict[str, Any], parts: dict[str, float], size: int
) -> dict[str, Any]:
    stages = {k.removesuffix("_seconds"): v for k, v in report["entities"][anchor.ENTITY]["durations"].items()}
    syncs = [s for p, s in parts.items() if p not in ("extract", "final")]
    engine_sum = round(sum(stages.values()), 3)
    critical = round(parts.get("extract", 0.0) + max(syncs, default=0.0), 3)
    finalize = sum(d for t, _, d in tasks if t == "finalize")
    return {
        "partition_size": size,
        "sync_tasks": sum(1 for t, _, _ in tasks if t.endswith(".sync")),
        "wall_seconds": wall,
        "stages": stages,
        "engine_sum": engine_sum,
        "engine_critical_path": critical,
        "finalize_task": round(finalize, 3),
        "overhead": round(wall - engine_sum, 3),
        "overhead_vs_critical_path": round(wall - critical, 3),
        "tasks": [{"task": t, "map_index": m, "seconds": round(d, 3)} for t, m, d in tasks],
    }


# ---------------------------------------------------------------- the table


HEADER = [
    "run", "sync tasks", "DAG run wall s", "extract", "classify", "load", "engine sum", "engine crit. path",
    "finalize task", "overhead (wall - sum)", "overhead (wall - crit.)", "speed-up",
]  # fmt: skip


def table_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    one = results["1 partition"]["wall_seconds"]
    rows = []
    for label, r in results.items():
        s = r["stages"]
        speedup = f"{one / r['wall_seconds']:.2f}x"
        rows.append(
            [label, r["sync_tasks"], r["wall_seconds"], s["extract"], s["classify"], s["load"], r["engine_sum"]]
            + [r["engine_critical_path"], r["finalize_task"], r["overhead"], r["overhead_vs_critical_path"], speedup]
        )
    return [[f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for row in [HEADER, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |")


def print_tasks(results: dict[str, dict[str, Any]]) -> None:
    for label, r in results.items():
        print(f"{label} task durations (s): " + ", ".join(task_label(t) for t in r["tasks"]))


def task_label(task: dict[str, Any]) -> str:
    index = "" if task["map_index"] < 0 else f"[{task['map_index']}]"
    return f"{task['task']}{index} {task['seconds']:.1f}"


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the source (1,500,000 is the full anchor)")
    parser.add_argument("--partition-size", type=int, help="records per sync task in run 2 (default: half the delta)")
    parser.add_argument("--seed", type=int, default=10)
    server = os.environ.get("TRUESYNC_BENCH_POSTGRES_URL") or anchor.DEFAULT_SERVER
    parser.add_argument("--server", default=server, help="PostgreSQL server URL (any database on it)")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--json", type=Path, help="also write every figure to FILE as JSON")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    server, databases = make_url(args.server), anchor.Databases.on_server(args.server)
    anchor.create_databases(server, databases)
    began = time.perf_counter()
    workload = anchor.generate(args.rows, args.seed, databases)
    print(f"generated {args.rows:,} rows in {time.perf_counter() - began:.1f} s; {anchor.describe(workload)}")
    os.environ.update(anchor.write_config(workload, work / "config"))
    half = args.partition_size or math.ceil(workload.delta / 2)
    assert half < workload.delta, f"--partition-size {half} gives fewer than 2 partitions of {workload.delta:,}"
    return {
        "1 partition": measure(workload, server, work, "1 partition", max(workload.delta + 1, anchor.PARTITION_SIZE)),
        "2 partitions": measure(workload, server, work, "2 partitions", half),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server, databases = make_url(args.server), anchor.Databases.on_server(args.server)
    with tempfile.TemporaryDirectory(prefix="truesync-anchor-airflow-") as tmp:
        work = Path(tmp)
        os.environ["AIRFLOW_HOME"] = str(work / "airflow")  # nothing here may touch ~/airflow
        print(f"commit {anchor.commit()}", flush=True)
        try:
            results = run(args, work)
        finally:
            if not args.keep:
                anchor.drop_databases(server, databases)
                anchor.execute(server, f'DROP DATABASE IF EXISTS "{METADATA_DB}" WITH (FORCE)', autocommit=True)
    print_tasks(results)
    print_table(table_rows(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
