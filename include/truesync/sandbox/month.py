"""A month of daily runs through real Airflow: the soak of ``make month``.

The sandbox is built over the month (``truesync sandbox init --days``), so every day carries
fresh drift of every kind, labelled. Each day is then one backfill of that day's interval per
SQL flow, executed by a real scheduler, one day after the other as daily schedules run. After
each day the month reads:

- each flow's run of the day: the class, outcome, overdue flag and check of every record it saw
  first, against the labels of the records changed that day;
- the store: the rows of every table. Staging must be empty after every finished run; per-record
  results stop growing at the flows' ``retention.results_runs``; the ledger grows by the new
  records, the audit trail by the restored overwrites, the queue by the new problems;
- Airflow: each DAG run's time from start to end, and the engine's own seconds in it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import MetaData, func, select

from truesync.pipeline.dags import dag_id
from truesync.pipeline.extract import NULL_KEY_PREFIX
from truesync.sandbox.chaos import FLOWS
from truesync.sandbox.groundtruth import differences
from truesync.sandbox.localairflow import LocalAirflow
from truesync.store import Store, runs, staging


@dataclass
class Day:
    """What one day of the month left: per flow its run's seconds and wrong records, and the store's rows."""

    day: date
    seconds: dict[str, float] = field(default_factory=dict)  # flow -> DAG run, start to end
    engine_seconds: dict[str, float] = field(default_factory=dict)  # flow -> extract and sync stages
    records: int = 0  # labelled records checked
    wrong: int = 0  # labelled records whose class, outcome, overdue flag or check differ
    examples: list[str] = field(default_factory=list)  # a few of them, as flow, entity, key: want -> got
    tables: dict[str, int] = field(default_factory=dict)  # store table -> rows after the day
    failures: list[str] = field(default_factory=list)


@dataclass
class Month:
    days: list[Day] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return all(not d.wrong and not d.failures and not d.tables.get("ts_staging") for d in self.days)

    def run_times(self, flow: str) -> tuple[float, float, float]:
        """The flow's first, median and last DAG run, in seconds."""
        times = [d.seconds[flow] for d in self.days]
        return times[0], statistics.median(times), times[-1]

    def growth(self) -> dict[str, list[int]]:
        """Store table -> its rows after each day."""
        return {table: [d.tables.get(table, 0) for d in self.days] for table in self.days[-1].tables}


def run_month(state: Path, first: date, days: int, show: Callable[[int, Month], None] | None = None) -> Month:
    """Backfill the SQL flows one day after the other over ``days`` days from ``first``, judging each
    day (``show`` is called with the day's number after each).

    The sandbox must be initialised over those days (``truesync sandbox init --start --days``).
    """
    labels = pd.read_csv(state / "sandbox" / "labels.csv", keep_default_na=False)
    labels["day"] = labels["changed_at"].str[:10]
    judges = {flow: _FlowJudge(flow, dag_id(flow), labels[labels["flow"] == flow]) for flow in FLOWS}
    airflow, store, month = LocalAirflow(state / "airflow"), Store(), Month()
    dag_ids = [judge.dag for judge in judges.values()]
    airflow.prepare(dag_ids)
    airflow.start()
    try:
        for offset in range(days):
            day = Day(first + timedelta(days=offset))
            airflow.backfill(dag_ids, day.day.isoformat(), day.day.isoformat())
            states = airflow.wait_for_backfills(dag_ids)
            for judge in judges.values():
                judge.judge(store, airflow, states[judge.dag][-1], day)
                if offset == days - 1:
                    judge.judge_keyless(day)
            day.tables = table_rows(store)
            month.days.append(day)
            if show:
                show(offset, month)
    finally:
        airflow.stop()
    return month


@dataclass
class _FlowJudge:
    """One flow's judge over the month: its labels, and the records its runs saw so far."""

    flow: str
    dag: str
    labels: pd.DataFrame
    seen: set[tuple[str, str]] = field(default_factory=set)  # (entity, key)
    keyless: list[pd.DataFrame] = field(default_factory=list)  # first sightings of rows without a key

    def judge(self, store: Store, airflow: LocalAirflow, dag_run: tuple[str, str, int], day: Day) -> None:
        """The flow's run of the day against the day's labels; records an earlier run saw are left out."""
        run_id, status, _ = dag_run
        start, end = airflow.run_span(self.dag, run_id)
        day.seconds[self.flow] = (end - start).total_seconds()
        newest = runs.latest(store, self.flow, 1, finished=True)
        run = newest[0] if newest else {"run_id": None, "status": "never finished", "window_end": None}
        window_end = datetime.combine(day.day + timedelta(days=1), datetime.min.time())
        watermark = runs.watermark(store, self.flow)
        if status != "success" or run["status"] != "success" or {run["window_end"], watermark} != {window_end}:
            day.failures.append(f"{self.dag} {run_id}: {status}; run {run['run_id']} {run['status']}, window "
                                f"end {run['window_end']}, watermark {watermark}, want {window_end}")  # fmt: skip
            return
        counts = runs.entity_counts(store, run["run_id"])
        day.engine_seconds[self.flow] = sum(c["extract_seconds"] + c["sync_seconds"] for c in counts.values())
        got = staging.run_results(store, run["run_id"])
        first = [(e, k) not in self.seen for e, k in zip(got["entity"], got["key"], strict=True)]
        self.seen.update(zip(got["entity"], got["key"], strict=True))
        got = got[first]
        keyless = got["key"].str.startswith(NULL_KEY_PREFIX)
        self.keyless.append(got[keyless].assign(key=""))
        want = self.labels[(self.labels["day"] == day.day.isoformat()) & (self.labels["key"] != "")]
        self._count(want, got[~keyless], day)

    def judge_keyless(self, day: Day) -> None:
        """Rows without a key over the whole month: every run reads them whatever their change time,
        and the sandbox holds the month's rows from the start, so the first run sees them all."""
        self._count(self.labels[self.labels["key"] == ""], pd.concat(self.keyless), day)

    def _count(self, want: pd.DataFrame, got: pd.DataFrame, day: Day) -> None:
        wrong = differences(want, got)
        day.records += _records(want)
        day.wrong += _records(wrong) if "key" in wrong else len(wrong)  # else: one row on the rows without a key
        day.examples += [f"{self.flow} {r}" for r in wrong.head(3).to_dict("records")]


def _records(rows: pd.DataFrame) -> int:
    """The records among label (or difference) rows: a key labelled more than once, with each outcome
    it may rightly end in (``Rows.label``), is one record; each row without a key is one."""
    keyed = rows["key"] != ""
    return len(rows.loc[keyed, ["entity", "key"]].drop_duplicates()) + int((~keyed).sum())


def table_rows(store: Store) -> dict[str, int]:
    """Rows of every table of the store."""
    metadata = MetaData()
    metadata.reflect(store.engine)
    with store.engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
            for name, table in sorted(metadata.tables.items())
            if name.startswith("ts_")
        }
