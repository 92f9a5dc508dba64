"""Benchmark: records/s for extract, classify and load, peak RSS, and cost versus table size.

For each table size it builds a web shop customer table and a CRM contact table on SQLite
(the embedded default) where ``--delta`` records changed inside one day window (a third
new, a third with a new address, a third re-saved unchanged), then runs the
``webshop_to_crm`` customer sync for that window in a fresh process and reads its timings.
The same delta against a table ``--factor`` times larger shows whether an incremental run
costs what the delta costs or what the table costs.

    python bench/sync_bench.py --rows 1000000 --delta 100000 --factor 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

WINDOW_START = datetime(2026, 11, 1)
BATCH = 100_000
SYSTEMS = ("webshop", "erp", "crm", "stockctl")


def _env(directory: Path) -> dict[str, str]:
    env = dict(os.environ, TRUESYNC_STATE_DIR=str(directory / "state"))
    for system in SYSTEMS:
        env[f"AIRFLOW_CONN_TRUESYNC_{system.upper()}"] = f"sqlite:///{directory / f'{system}.db'}"
    return env


def generate(directory: Path, rows: int, delta: int, seed: int) -> None:
    """Create the sandbox tables and fill customers/contacts with ``rows`` and a ``delta``."""
    from sqlalchemy import create_engine

    from truesync.sandbox.systems import tables

    rng = np.random.default_rng(seed)
    changed = np.zeros(rows, dtype=bool)
    changed[rng.choice(rows, size=delta, replace=False)] = True
    kind = rng.integers(0, 3, size=rows)  # 0 new in source, 1 moved address, 2 re-saved only
    history = [WINDOW_START - timedelta(days=40) + timedelta(seconds=int(s)) for s in rng.integers(0, 30 * 86400, 1000)]
    in_window = [WINDOW_START + timedelta(seconds=int(s)) for s in rng.integers(0, 86400, 1000)]
    # Timestamps as SQLAlchemy writes them on SQLite, so text comparison orders them right.
    for system, metadata in tables().items():
        engine = create_engine(f"sqlite:///{directory / f'{system}.db'}")
        metadata.create_all(engine)
        engine.dispose()
    shop = create_engine(f"sqlite:///{directory / 'webshop.db'}")
    crm = create_engine(f"sqlite:///{directory / 'crm.db'}")
    for start in range(0, rows, BATCH):
        idx = range(start, min(rows, start + BATCH))
        source, target = [], []
        for i in idx:
            key, moved = f"C{i:08d}", changed[i] and kind[i] == 1
            address = f"{i % 977} Long Street, Town {i % 101}"
            ts = in_window[i % 1000] if changed[i] else history[i % 1000]
            source.append((key, f"c{i}@example.com", f"Name {i}", f"+44 {i:010d}",
                           address + (" (moved)" if moved else ""), "1980-01-01", "G", ts))  # fmt: skip
            if not (changed[i] and kind[i] == 0):
                target.append((key, f"c{i}@example.com", f"Name {i}", f"+44 {i:010d}", address,
                               "1980-01-01", "GOLD", "retail", history[i % 1000]))  # fmt: skip
        with shop.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO customers (ext_id, email_address, full_name, phone, address, birth_date, tier_code,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*r[:7], r[7].isoformat(sep=" ", timespec="microseconds")) for r in source],
            )
        with crm.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO contacts (external_id, email, display_name, phone, street_address, dob, tier, segment,"
                " modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*r[:8], r[8].isoformat(sep=" ", timespec="microseconds")) for r in target],
            )


def run_once() -> dict[str, float]:
    """Inside a fresh process: one customer sync for the window; prints timings as JSON."""
    from truesync.config import load_config
    from truesync.pipeline.extract import extract_entity
    from truesync.pipeline.job import EntityJob, begin_run
    from truesync.pipeline.load import sync_entity
    from truesync.pipeline.window import Window
    from truesync.quality import gx  # noqa: F401 - imported on first use; here before the clock, as every import
    from truesync.reporting.report import entity_report
    from truesync.store import Store, runs

    config, store = load_config(), Store()
    window = Window(WINDOW_START, WINDOW_START + timedelta(days=1))
    run_id = f"bench-{time.time_ns()}"
    begin_run(store, "webshop_to_crm", run_id, window, False)
    job = EntityJob(config, store, "webshop_to_crm", "customer", run_id)
    began = time.monotonic()
    extract_entity(job, window)
    sync_entity(job, window, dry_run=False)
    total = time.monotonic() - began
    report = entity_report(runs.entity_counts(store, run_id)["customer"])
    return {
        "extracted": report["extracted"],
        **report["durations"],
        "total_seconds": round(total, 3),
        "outcomes": report["outcomes"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure(rows: int, delta: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="truesync-bench-") as tmp:
        directory = Path(tmp)
        began = time.monotonic()
        _child(["generate", str(directory), str(rows), str(delta), str(seed)], directory)
        print(f"  generated {rows:,} rows in {time.monotonic() - began:.0f}s", flush=True)
        result = json.loads(_child(["run"], directory).strip().splitlines()[-1])
    n = result["extracted"]
    for phase in ("extract", "classify", "load", "total"):
        result[f"{phase}_records_per_s"] = round(n / max(result[f"{phase}_seconds"], 1e-9))
    result["rows"] = rows
    return result


def _child(args: list[str], directory: Path) -> str:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], env=_env(directory), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-4000:])
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--delta", type=int, default=100_000)
    parser.add_argument("--factor", type=int, default=10, help="size multiplier of the second measurement")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "generate":
            generate(Path(args.child[1]), int(args.child[2]), int(args.child[3]), int(args.child[4]))
        else:
            print(json.dumps(run_once()))
        return 0
    results = []
    for rows in (args.rows, args.rows * args.factor) if args.factor > 1 else (args.rows,):
        print(f"== {rows:,} rows, delta {args.delta:,} ==", flush=True)
        results.append(measure(rows, args.delta, args.seed))
        print(json.dumps(results[-1], indent=2), flush=True)
    if len(results) == 2:
        ratio = results[1]["total_seconds"] / results[0]["total_seconds"]
        print(f"slowdown for {args.factor}x larger tables at the same delta: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
