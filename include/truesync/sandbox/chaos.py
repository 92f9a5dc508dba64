"""The kill -9 fault suite: task processes killed at failpoints while a real Airflow backfills the SQL flows.

One session is a fresh sandbox and one backfill per SQL flow over the demo days, executed by a
real scheduler. Each planned kill names a flow, a demo day and a failpoint (``support.failpoints``):
the task of that DAG run that reaches the failpoint first sends itself ``SIGKILL``, in extract
(after a batch is staged), in sync (after the target write and before the ledger write, or after
the ledger write) or in finalize (after the watermark moved, before the run is marked finished).
Airflow's task supervisor sees the process die, marks the attempt failed and retries it after the
flow's ``retry_delay`` (a few seconds here); the run then completes. Every fourth kill takes the
supervisor too, as a worker host that dies whole: nothing reports the attempt's end, and the
scheduler fails it when its heartbeat stops (``HEARTBEAT_TIMEOUT``), then retries it.

Afterwards the session is judged record by record: every labelled record has its labelled class
(or ``in_sync`` when the killed attempt had already written it), no target record differs from
its source unless it is held, nothing is duplicated in the targets, the ledger or the queue,
every run is conserved and finished (none left running), and the watermark reached the last window.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from truesync.config import Config, load_config
from truesync.core.canonical import raw_keys
from truesync.pipeline.dags import dag_id
from truesync.sandbox import systems as sandbox
from truesync.sandbox.groundtruth import differences, drift, everything, first_results, held_keys
from truesync.sandbox.localairflow import LocalAirflow
from truesync.store import Store, runs
from truesync.store.schema import exceptions, ledger
from truesync.support.failpoints import PLAN_ENV, TASK, WORKER

POINTS = ("extract.staged", "sync.target_written", "sync.ledger_written", "finalize.watermark_moved")
FLOWS = ("webshop_to_crm", "erp_to_stockctl")
QUICK_RETRIES = {"retry_delay": "3s"}  # flow settings of a session: a killed task retries at once


# A dead worker is noticed by the scheduler when the task's heartbeat stops: after 30 s here, 5 min by default.
HEARTBEAT_TIMEOUT = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
}
WORKER_EVERY = 4  # every fourth planned kill takes the task's supervisor with it


@dataclass(frozen=True)
class Kill:
    """One planned ``kill -9``: the first task of the flow's run for ``day`` to reach ``point`` dies there,
    alone (``task``) or with its supervisor (``worker``)."""

    flow: str
    day: int  # the demo day: the day-th run of the flow's backfill
    point: str
    kills: str = TASK

    @property
    def label(self) -> str:
        return label(self.point, self.kills)


def label(point: str, kills: str) -> str:
    """A failpoint as the verdict shows a kill there: ``sync.target_written (worker)`` for a whole worker."""
    return point if kills == TASK else f"{point} (worker)"


def plan(seed: int, trials: int) -> list[Kill]:
    """``trials`` kills (at most one per DAG run of a session), seeded: flows, days and points; every
    ``WORKER_EVERY``-th kills the worker."""
    rng = random.Random(seed)
    runs_of_session = [(flow, day) for flow in FLOWS for day in range(sandbox.DEMO_DAYS)]
    if trials > len(runs_of_session):
        raise ValueError(f"a session has {len(runs_of_session)} runs; plan more sessions for {trials} kills")
    chosen = rng.sample(runs_of_session, trials)
    return [
        Kill(flow, day, rng.choice(POINTS), WORKER if n % WORKER_EVERY == WORKER_EVERY - 1 else TASK)
        for n, (flow, day) in enumerate(chosen)
    ]


@dataclass
class Verdict:
    """What one session's records say after the kills."""

    kills: list[Kill]
    hit: list[str] = field(default_factory=list)  # the failpoints the kills reached, as ``Kill.label``
    retried: int = 0  # task attempts Airflow retried
    records: int = 0  # labelled records and ledger entries checked
    wrong_class: int = 0
    lost: int = 0  # target differs from source, not held
    duplicated: int = 0  # keys twice in a target, the ledger or the queue
    leaked: int = 0  # runs a killed attempt left unfinished
    failures: list[str] = field(default_factory=list)  # what else broke: runs, conservation, watermark

    @property
    def clean(self) -> bool:
        return not (self.wrong_class or self.lost or self.duplicated or self.leaked or self.failures)


def run_session(state: Path, kills: list[Kill]) -> Verdict:
    """Backfill the SQL flows through Airflow with ``kills`` planned; the sandbox must be initialised."""
    work = state / "chaos"  # the plan and the markers of the kills that happened
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    dags = [dag_id(flow) for flow in FLOWS]
    airflow = LocalAirflow(state / "airflow", extra_env={PLAN_ENV: str(work / "plan.json"), **HEARTBEAT_TIMEOUT})
    airflow.prepare(dags)
    last = (sandbox.DEMO_START + timedelta(days=sandbox.DEMO_DAYS - 1)).isoformat()
    airflow.backfill(dags, sandbox.DEMO_START.isoformat(), last)
    points: dict[str, dict[str, str]] = {}
    for kill in kills:  # the backfill's runs exist now, queued in the order of their days
        run_id = airflow.backfill_runs(dag_id(kill.flow))[kill.day][0]
        points.setdefault(kill.point, {})[f"{kill.flow}:{run_id}"] = kill.kills
    (work / "plan.json").write_text(json.dumps(points, indent=2))
    airflow.start()
    try:
        states = airflow.wait_for_backfills(dags)
    finally:
        airflow.stop()
    verdict = Verdict(kills)
    hits = [json.loads(p.read_text()) for p in sorted(work.glob("hit-*.json"))]
    verdict.hit = [label(hit["point"], hit["kills"]) for hit in hits]
    verdict.retried = sum(airflow.retried_attempts(dag, run_id) for dag in dags for run_id, _, _ in states[dag])
    verdict.failures += [f"{dag} {run_id}: {s}" for dag in dags for run_id, s, _ in states[dag] if s != "success"]
    _judge(load_config(), Store(), state, verdict)
    return verdict


def _judge(config: Config, store: Store, state: Path, verdict: Verdict) -> None:
    labels = pd.read_csv(state / "sandbox" / "labels.csv", keep_default_na=False)
    for flow in FLOWS:
        wanted = labels[labels["flow"] == flow]
        diff = differences(wanted, first_results(store, flow))
        written_before = (diff["class_got"] == "in_sync") & diff["outcome_want"].isin(["created", "updated"])
        verdict.wrong_class += int((~written_before).sum())
        verdict.records += len(wanted)
        for entity in config.flows[flow].entities:
            verdict.lost += len(drift(config, flow, entity) - held_keys(store, flow, entity))
            mapping = config.entity_mapping(config.flows[flow].target, entity)
            keys = raw_keys(everything(config, config.flows[flow].target, mapping), mapping).dropna()
            verdict.duplicated += int(keys.duplicated().sum())
        _check_runs(store, flow, verdict)
    with store.engine.connect() as conn:
        for table in (ledger, exceptions):
            total, distinct = _counts(conn, table)
            verdict.duplicated += total - distinct
            verdict.records += total if table is ledger else 0


def _counts(conn: Any, table: Any) -> tuple[int, int]:
    key = table.c.flow + " " + table.c.entity + " " + table.c.key
    total, distinct = conn.execute(select(func.count(), func.count(key.distinct()))).one()
    return int(total), int(distinct)


def _check_runs(store: Store, flow: str, verdict: Verdict) -> None:
    flow_runs = runs.latest(store, flow, 100)
    statuses = Counter(r["status"] for r in flow_runs)
    verdict.leaked += statuses["running"]
    successes = [r for r in flow_runs if r["status"] == "success"]
    if len(successes) < sandbox.DEMO_DAYS:
        verdict.failures.append(f"{flow}: runs {dict(statuses)}, want {sandbox.DEMO_DAYS} successful")
    for run in successes:
        report = json.loads(run["report"])
        broken = [e for e, body in report["entities"].items() if not body["conserved"]]
        if broken:
            verdict.failures.append(f"{run['run_id']}: not conserved: {broken}")
    end = datetime.combine(sandbox.DEMO_START, datetime.min.time()) + timedelta(days=sandbox.DEMO_DAYS)
    if (watermark := runs.watermark(store, flow)) != end:
        verdict.failures.append(f"{flow}: watermark {watermark}, want {end}")
