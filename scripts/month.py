"""`make month`: a month of daily runs through real Airflow, at sandbox scale 10,000.

Builds a fresh sandbox over ``--days`` days (fresh, labelled drift every day) in a temporary
directory, then backfills the SQL flows one day after the other through a real scheduler
(``truesync.sandbox.month``). Prints, per day, each flow's DAG run time and the engine's share
of it, the records checked against the labels and those that differ; then the store's rows per
table after the first and the last day, and each flow's first, median and last run time.
Exits non-zero when a record was misclassified, a run failed or staging was left behind.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

from truesync.cli import main as truesync
from truesync.sandbox import DEMO_START
from truesync.sandbox.chaos import FLOWS, QUICK_RETRIES
from truesync.sandbox.month import Month, run_month
from truesync.sandbox.sessions import session_environment

RESULTS_KEPT = 7  # the flows' retention.results_runs in the month: a week


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scale", type=int, default=10_000, help="sandbox customers")
    parser.add_argument("--start", type=date.fromisoformat, default=DEMO_START)
    parser.add_argument("--keep-results", type=int, default=RESULTS_KEPT, help="the flows' retention.results_runs")
    args = parser.parse_args()
    month = fresh_month(args.scale, args.days, args.keep_results, args.start)
    summary(month)
    return 0 if month.clean else 1


def fresh_month(scale: int, days: int, keep_results: int, start: date = DEMO_START) -> Month:
    """A new sandbox in a temporary directory (the environment pointed at it), then the month."""
    root = Path(tempfile.mkdtemp(prefix="truesync-month-"))
    settings = {**QUICK_RETRIES, "retention": {"results_runs": keep_results}}
    os.environ.update(session_environment(root, settings))
    print(f"== sandbox: {scale} customers over {days} days from {start} ({root}) ==", flush=True)
    if truesync(["sandbox", "init", "--scale", str(scale), "--days", str(days), "--start", str(start)]) != 0:
        raise RuntimeError("sandbox init failed")
    return run_month(root / "state", start, days, show=_show_day)


def _show_day(number: int, month: Month) -> None:
    day = month.days[number]
    times = "  ".join(f"{flow} {day.seconds[flow]:5.1f}s (engine {day.engine_seconds.get(flow, 0):4.1f}s)"
                      for flow in FLOWS)  # fmt: skip
    print(f"day {number + 1:2d} {day.day}  {times}  records {day.records:5d}  wrong {day.wrong}"
          f"  staging {day.tables.get('ts_staging', 0)}  {'; '.join(day.failures)}", flush=True)  # fmt: skip
    for example in day.examples:
        print(f"    wrong: {example}", flush=True)


def summary(month: Month) -> None:
    print("\n== the store, rows per table: after day 1, after the last day, the most added by one day ==")
    for table, rows in month.growth().items():
        most = max((b - a for a, b in zip([0, *rows], rows, strict=False)), default=0)
        print(f"  {table:<22} {rows[0]:>9,} {rows[-1]:>9,} {most:>9,}")
    print("\n== DAG run time, seconds: first, median, last ==")
    for flow in FLOWS:
        first, median, last = month.run_times(flow)
        print(f"  {flow:<22} {first:7.1f} {median:7.1f} {last:7.1f}")
    wrong = sum(d.wrong for d in month.days)
    print(f"\nrecords checked {sum(d.records for d in month.days):,}, misclassified {wrong}, "
          f"failures {sum(len(d.failures) for d in month.days)}, clean {month.clean}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
