"""`make chaos`: the fault suite. Prints one row per fault: trials, records checked, lost, duplicated, leaked.

1. **kill -9** (``truesync.sandbox.chaos``): seeded kills of task processes at failpoints in
   extract, sync (between the target write and the ledger write, and after it) and finalize,
   while a real Airflow backfills the SQL flows over the demo days, every fourth kill taking the
   task's supervisor too (a dead worker, found by the heartbeat's timeout); Airflow retries each
   killed task and the runs complete. Sessions of up to six kills, each a fresh sandbox: on SQLite,
   then (with a PostgreSQL server: ``--postgres`` or ``TRUESYNC_TEST_POSTGRES_URL``) with the
   store and both SQL targets on PostgreSQL.
2. The fault tests of the CI-sized suite, run by pytest: dropped connections, rows a target
   refuses, hostile input, the secrets canary, the rate limit across processes.
3. A month of daily runs (``scripts/month.py``, also ``make month`` alone): 30 days at sandbox
   scale 10,000 through a real Airflow, judged day by day.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from month import RESULTS_KEPT, fresh_month, summary
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from truesync.cli import main as truesync
from truesync.sandbox.chaos import FLOWS, QUICK_RETRIES, Kill, Verdict, plan, run_session
from truesync.sandbox.month import Month
from truesync.sandbox.sessions import session_environment
from truesync.support.paths import PROJECT_ROOT

PER_SESSION = 6
ORIGINAL_ENV = dict(os.environ)  # the pytest fault tests run with it, not with a session's
FAULT_TESTS = {
    "dropped connection (PostgreSQL, MariaDB; target and store)": "tests/integration/test_connection_drops.py",
    "hostile input (field and key, 3 databases)": "tests/integration/test_hostile_input.py",
    "secrets canary (CLI, logs, files, store)": "tests/integration/test_secrets.py",
    "rows a target refuses, isolated": "tests/integration/test_bulk.py",
    "rate limit across processes": "tests/integration/test_rest_connector.py::"
    "test_the_rate_limit_holds_across_worker_processes_through_the_store",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24, help="kills per database (default 24)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=int, default=300, help="sandbox customers per session")
    parser.add_argument("--postgres", default=os.environ.get("TRUESYNC_TEST_POSTGRES_URL"), help="admin URL")
    parser.add_argument("--kills-only", action="store_true", help="skip the pytest fault tests and the month")
    parser.add_argument("--month-days", type=int, default=30, help="days of the month of daily runs (0: none)")
    parser.add_argument("--month-scale", type=int, default=10_000, help="sandbox customers of the month")
    args = parser.parse_args()
    rows = [_kill_row("sqlite", _sessions(args, None))]
    if args.postgres:
        rows.append(_kill_row("postgresql", _sessions(args, args.postgres)))
    if not args.kills_only:
        rows += [_pytest_row(name, target) for name, target in FAULT_TESTS.items()]
        if args.month_days:
            rows.append(_month_row(fresh_month(args.month_scale, args.month_days, RESULTS_KEPT)))
    _print(rows)
    return 0 if all(row["ok"] for row in rows) else 1


def _sessions(args: argparse.Namespace, postgres: str | None) -> list[Verdict]:
    verdicts, left, session = [], args.trials, 0
    while left > 0:
        kills = plan(args.seed + session, min(PER_SESSION, left))
        root = Path(tempfile.mkdtemp(prefix="truesync-chaos-"))
        os.environ.update(session_environment(root, QUICK_RETRIES, _databases(postgres) if postgres else None))
        print(f"== session {session + 1}: {', '.join(_named(k) for k in kills)} ({root}) ==", flush=True)
        if truesync(["sandbox", "init", "--scale", str(args.scale)]) != 0:
            raise RuntimeError("sandbox init failed")
        verdicts.append(run_session(root / "state", kills))
        print(f"   hit {verdicts[-1].hit}, retried {verdicts[-1].retried}, clean {verdicts[-1].clean}", flush=True)
        left, session = left - len(kills), session + 1
    return verdicts


def _databases(admin_url: str) -> list[str]:
    """Three fresh PostgreSQL databases (store, crm, stockctl) on the server of ``admin_url``."""
    base = make_url(admin_url)
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    names = [f"ts_chaos_{uuid.uuid4().hex[:10]}" for _ in range(3)]
    with engine.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return [base.set(database=name).render_as_string(hide_password=False) for name in names]


def _named(kill: Kill) -> str:
    return f"{kill.flow} day {kill.day} at {kill.label}"


def _kill_row(database: str, verdicts: list[Verdict]) -> dict[str, object]:
    kills = [k for v in verdicts for k in v.kills]
    hit = [p for v in verdicts for p in v.hit]
    points = ", ".join(f"{p} {hit.count(p)}" for p in sorted(set(hit)))
    return {
        "fault": f"kill -9 of a task process or its worker ({database}): {points}",
        "trials": f"{len(hit)}/{len(kills)} hit, {sum(v.retried for v in verdicts)} retried",
        "records": sum(v.records for v in verdicts),
        "misclassified": sum(v.wrong_class for v in verdicts),
        "lost": sum(v.lost for v in verdicts),
        "duplicated": sum(v.duplicated for v in verdicts),
        "leaked": sum(v.leaked for v in verdicts),
        "ok": all(v.clean for v in verdicts) and len(hit) == len(kills),
        "notes": "; ".join(f for v in verdicts for f in v.failures),
    }


def _pytest_row(name: str, target: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target],
        cwd=PROJECT_ROOT,
        env=ORIGINAL_ENV,
        check=False,
    )
    return {
        "fault": name,
        "trials": "pytest",
        "records": "-",
        "misclassified": 0 if done.returncode == 0 else "FAILED",
        "lost": 0 if done.returncode == 0 else "FAILED",
        "duplicated": 0 if done.returncode == 0 else "FAILED",
        "leaked": 0 if done.returncode == 0 else "FAILED",
        "ok": done.returncode == 0,
        "notes": target,
    }


def _month_row(month: Month) -> dict[str, object]:
    summary(month)
    times = "; ".join(f"{flow} run first/median/last " + "/".join(f"{t:.1f}s" for t in month.run_times(flow))
                      for flow in FLOWS)  # fmt: skip
    return {
        "fault": f"a month of daily runs ({len(month.days)} days, retention.results_runs {RESULTS_KEPT})",
        "trials": f"{len(month.days)} days",
        "records": sum(d.records for d in month.days),
        "misclassified": sum(d.wrong for d in month.days),
        "lost": "-",
        "duplicated": "-",
        "leaked": f"{sum(d.tables.get('ts_staging', 0) for d in month.days)} staged rows left",
        "ok": month.clean,
        "notes": "; ".join(f for d in month.days for f in d.failures) or times,
    }


def _print(rows: list[dict[str, object]]) -> None:
    columns = ["fault", "trials", "records", "misclassified", "lost", "duplicated", "leaked"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("\n" + " | ".join(c.ljust(widths[c]) for c in columns))
    print("-+-".join("-" * widths[c] for c in columns))
    for row in rows:
        print(" | ".join(str(row[c]).ljust(widths[c]) for c in columns))
        if row["notes"] and not row["ok"]:
            print(f"   {row['notes']}")


if __name__ == "__main__":
    sys.exit(main())
