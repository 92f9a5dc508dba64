"""The production topology as real processes: PostgreSQL metadata and store, CeleryExecutor
with Redis as the broker, an api-server, a scheduler, a dag-processor and two Celery workers.

The sandbox flows are backfilled over two days; the results must equal the SQLite path's
(classification against the ground truth, conservation, target state), and the mapped sync
tasks of one run must be shared by both workers.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import redis
from conftest import ServerDatabases

from truesync.cli import main as truesync
from truesync.config import Config, load_config
from truesync.sandbox import systems as sandbox
from truesync.sandbox.groundtruth import differences, drift, first_results, held_keys
from truesync.sandbox.localairflow import LocalAirflow
from truesync.store import Store, runs
from truesync.support.paths import PROJECT_ROOT

DAYS = 2


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own (a random index), flushed afterwards."""
    raw = os.environ.get("TRUESYNC_TEST_REDIS_URL")
    if not raw:
        pytest.skip("TRUESYNC_TEST_REDIS_URL not set")
    url = f"{raw.rstrip('/').rsplit('/', 1)[0] if raw.count('/') > 2 else raw.rstrip('/')}/{random.randint(1, 15)}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"TRUESYNC_TEST_REDIS_URL is set but Redis is unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    yield url
    client.flushdb()
    client.close()


def _small_partitions(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "include" / "config", directory)
    flows = directory / "flows.yaml"
    flows.write_text(flows.read_text().replace("chunk_size: 5000", "chunk_size: 5000\n    partition_size: 25"))
    return directory


def test_backfill_on_celery_workers_with_postgres(
    state: Path,
    tmp_path: Path,
    postgres_databases: ServerDatabases,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metadata, store_url = postgres_databases.new(), postgres_databases.new()
    monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(_small_partitions(tmp_path)))
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STORE", store_url.render_as_string(hide_password=False))
    assert truesync(["sandbox", "init", "--scale", "300"]) == 0
    config, store = load_config(), Store()
    flows = ["webshop_to_crm", "erp_to_stockctl"]  # the REST flows run through Airflow in test_airflow_e2e
    dag_ids = [f"truesync_{flow}" for flow in flows]
    meta = metadata.render_as_string(hide_password=False)
    airflow = LocalAirflow(
        state / "airflow",
        executor="CeleryExecutor",
        extra_env={
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
            "AIRFLOW__CELERY__BROKER_URL": redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{meta}",
        },
    )
    airflow.prepare(dag_ids)
    _backfill_and_check(airflow, config, store, flows, state)


def _backfill_and_check(airflow: LocalAirflow, config: Config, store: Store, flows: list[str], state: Path) -> None:
    dag_ids = [f"truesync_{flow}" for flow in flows]
    airflow.start(("api-server", "scheduler", "dag-processor", "celery-worker", "celery-worker"))
    try:
        last = sandbox.DEMO_START + timedelta(days=DAYS - 1)
        for dag_id in dag_ids:
            airflow.backfill(dag_id, sandbox.DEMO_START.isoformat(), last.isoformat())
        states = airflow.wait_for_backfills(dag_ids)
    finally:
        airflow.stop()
    for dag_runs in states.values():
        assert [s for _, s, _ in dag_runs] == ["success"] * DAYS, states
    assert store.engine.dialect.name == "postgresql"

    cutoff = datetime.combine(sandbox.DEMO_START + timedelta(days=DAYS), datetime.min.time()).isoformat()
    labels = pd.read_csv(state / "sandbox" / "labels.csv", keep_default_na=False)
    labels = labels[(labels["key"] == "") | (labels["changed_at"] < cutoff)]
    for flow in flows:
        spec = config.flows[flow]
        wrong = differences(labels[labels["flow"] == flow], first_results(store, flow))
        assert wrong.empty, f"{flow} differs from the ground truth:\n{wrong.to_string()}"
        for run in runs.latest(store, flow, 10):
            assert run["status"] == "success", run
        for entity in spec.entities:
            assert drift(config, flow, entity, until=cutoff) <= held_keys(store, flow, entity)

    logs = {p.name: p.read_text() for p in (state / "airflow" / "process-logs").glob("celery-worker-*.log")}
    assert len(logs) == 2
    synced_by = {
        name: {run for task, run in WORKLOAD.findall(text) if task.endswith(".sync")} for name, text in logs.items()
    }
    shared = set.intersection(*synced_by.values())
    assert shared, f"both workers should take sync partitions of one run: {synced_by}"


WORKLOAD = re.compile(r"Executing workload in Celery: .*?task_id='([^']+)'.*?run_id='([^']+)'")
