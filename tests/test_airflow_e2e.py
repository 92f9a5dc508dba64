"""End to end through Airflow: a real backfill, executed by a real scheduler.

The sandbox flows run over the demo days as ``airflow backfill create`` runs; the test
then checks classification against the sandbox's ground truth, the targets against the
sources, the conservation law, and that reprocessing the same range writes nothing.
The same test runs with PostgreSQL and MariaDB targets and a PostgreSQL store when the
test database URLs are set.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from groundtruth import differences, drift, first_results, held_keys
from sqlalchemy import select
from sqlalchemy.engine import URL

from truesync import sandbox
from truesync.cli import main as truesync
from truesync.config import Config, load_config
from truesync.connectors import open_system
from truesync.localairflow import LocalAirflow
from truesync.store import Store, queue, runs

pytestmark = pytest.mark.airflow
FIRST = sandbox.DEMO_START
LAST = sandbox.DEMO_START + timedelta(days=sandbox.DEMO_DAYS - 1)


def _backfill_all(airflow: LocalAirflow, dag_ids: list[str], reprocess: str) -> dict[str, list]:
    """Create the backfills while the scheduler is down (SQLite metadata), then run them."""
    for dag_id in dag_ids:
        airflow.backfill(dag_id, FIRST.isoformat(), LAST.isoformat(), reprocess)
    airflow.start()
    try:
        return airflow.wait_for_backfills(dag_ids)
    finally:
        airflow.stop()


def _target_snapshot(config: Config) -> dict[str, list]:
    snapshot = {}
    for flow, spec in config.flows.items():
        connector = open_system(config, spec.target)
        for entity in spec.entities:
            table = connector.table(config.entity_mapping(spec.target, entity))
            with connector.engine.connect() as conn:
                snapshot[f"{flow}.{entity}"] = sorted(map(tuple, conn.execute(select(table)).all()), key=str)
    return snapshot


def _reports(store: Store, flow: str) -> list[dict]:
    return [json.loads(r["report"]) for r in runs.latest(store, flow, 100) if r["report"]]


def _run_sandbox_through_airflow(state: Path) -> None:
    assert truesync(["sandbox", "init", "--scale", "300"]) == 0
    config, store = load_config(), Store()
    dag_ids = [f"truesync_{flow}" for flow in config.flows]
    airflow = LocalAirflow(state / "airflow")
    airflow.prepare(dag_ids)

    first = _backfill_all(airflow, dag_ids, "none")
    for dag_runs in first.values():
        assert [s for _, s, _ in dag_runs] == ["success"] * sandbox.DEMO_DAYS, first

    labels = pd.read_csv(state / "sandbox" / "labels.csv", keep_default_na=False)
    for flow, spec in config.flows.items():
        wrong = differences(labels[labels["flow"] == flow], first_results(store, flow))
        assert wrong.empty, f"{flow} differs from the ground truth:\n{wrong.to_string()}"
        for entity in spec.entities:
            assert drift(config, flow, entity) <= held_keys(store, flow, entity)
        for report in _reports(store, flow):
            assert all(e["conserved"] for e in report["entities"].values()), report
    written = sum(r["totals"]["created"] + r["totals"]["updated"] for f in config.flows for r in _reports(store, f))
    assert written > 0

    before_targets = _target_snapshot(config)
    before_queue = sorted((r["id"], r["key"]) for r in queue.list_exceptions(store))
    second = _backfill_all(airflow, dag_ids, "completed")
    for dag_runs in second.values():
        assert [(s, n) for _, s, n in dag_runs] == [("success", 1)] * sandbox.DEMO_DAYS, second
    rerun = [r for f in config.flows for r in _reports(store, f) if r["run_id"].endswith("#1")]
    assert len(rerun) == sandbox.DEMO_DAYS * len(config.flows)
    assert all(r["totals"]["created"] == 0 and r["totals"]["updated"] == 0 for r in rerun), rerun
    assert _target_snapshot(config) == before_targets
    assert sorted((r["id"], r["key"]) for r in queue.list_exceptions(store)) == before_queue


def test_backfill_through_airflow_on_sqlite(state: Path) -> None:
    _run_sandbox_through_airflow(state)


def test_backfill_through_airflow_on_postgres_and_mariadb(
    state: Path, postgres_url: URL, mysql_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_CRM", postgres_url.render_as_string(hide_password=False))
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STOCKCTL", mysql_url.render_as_string(hide_password=False))
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STORE", postgres_url.render_as_string(hide_password=False))
    _run_sandbox_through_airflow(state)
    assert Store().engine.dialect.name == "postgresql"
