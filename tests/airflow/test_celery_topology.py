"""The production topology as real processes: PostgreSQL metadata and store, CeleryExecutor
with Redis as the broker, an api-server, a scheduler, a dag-processor and two Celery workers.

The sandbox flows are backfilled over two days; the results must equal the SQLite path's
(classification against the ground truth, conservation, target state), and the mapped sync
tasks of one run must be shared by both workers. Then two flows read one REST API at once from
the two workers: the API must never see more requests in a second than its ``rate_limit``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
import requests
from config_edits import edit
from conftest import ServerDatabases
from sandboxapis import sandbox_apis

from truesync.cli import main as truesync
from truesync.config import Config, load_config
from truesync.pipeline.dags import dag_id
from truesync.sandbox import systems as sandbox
from truesync.sandbox.groundtruth import differences, drift, first_results, held_keys
from truesync.sandbox.localairflow import LocalAirflow
from truesync.sandbox.sessions import configured
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
    return configured(tmp_path / "config", {"partition_size": 25})


@pytest.fixture
def celery_airflow(
    state: Path, postgres_databases: ServerDatabases, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Path], LocalAirflow]:
    """``make(config_dir)``: a sandbox at scale 300 for that configuration with its store on
    PostgreSQL, and Airflow on CeleryExecutor (PostgreSQL metadata, Redis broker), not started yet."""

    def make(config_dir: Path) -> LocalAirflow:
        monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(config_dir))
        metadata, store_url = postgres_databases.new(), postgres_databases.new()
        monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STORE", store_url.render_as_string(hide_password=False))
        assert truesync(["sandbox", "init", "--scale", "300"]) == 0
        meta = metadata.render_as_string(hide_password=False)
        return LocalAirflow(
            state / "airflow",
            executor="CeleryExecutor",
            extra_env={
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
                "AIRFLOW__CELERY__BROKER_URL": redis_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{meta}",
            },
        )

    return make


def test_backfill_on_celery_workers_with_postgres(
    state: Path, tmp_path: Path, celery_airflow: Callable[[Path], LocalAirflow]
) -> None:
    airflow = celery_airflow(_small_partitions(tmp_path))
    config, store = load_config(), Store()
    flows = ["webshop_to_crm", "erp_to_stockctl"]  # the REST flows run through Airflow in test_airflow_e2e
    airflow.prepare([f"truesync_{flow}" for flow in flows])
    _backfill_and_check(airflow, config, store, flows, state)


def _backfill_and_check(airflow: LocalAirflow, config: Config, store: Store, flows: list[str], state: Path) -> None:
    dag_ids = [f"truesync_{flow}" for flow in flows]
    airflow.start(("api-server", "scheduler", "dag-processor", "celery-worker", "celery-worker"))
    try:
        last = sandbox.DEMO_START + timedelta(days=DAYS - 1)
        airflow.backfill(dag_ids, sandbox.DEMO_START.isoformat(), last.isoformat())
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


# --- one REST API, two workers ------------------------------------------------------------------

CEILING = 10  # requests per second the CRM API allows in this test
# Contacts a page: each compare alone reads about 14 s, so the two still read together for seconds
# when the second starts several seconds after the first.
PAGE = 2
READERS = {"crm_api_to_crm": "crm", "crm_api_to_mirror": "mirror"}  # two flows reading the CRM API


def _two_readers_of_the_crm_api(tmp_path: Path) -> Path:
    """The shipped configuration plus two flows whose compares list the CRM API's contacts,
    ``PAGE`` a page, under a ceiling of ``CEILING`` requests per second: one into the CRM's
    database, one into ``mirror``, a second SQL system mapped as the CRM is. Their targets differ,
    so their pools let them run at once."""
    directory = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "include" / "config", directory)

    def slow_api_and_mirror(doc: dict[str, Any]) -> None:
        rest = doc["systems"]["crm_api"]["rest"]
        rest["rate_limit"] = CEILING
        rest["endpoints"]["contacts"]["pagination"] = {"style": "cursor", "page_size": PAGE}
        doc["systems"]["mirror"] = {**doc["systems"]["crm"], "connection": "truesync_mirror"}

    edit(directory, "systems.yaml", slow_api_and_mirror)
    edit(directory, "mappings.yaml", lambda doc: doc["mappings"].update(mirror=doc["mappings"]["crm"]))
    readers = {
        name: {"source": "crm_api", "target": target, "entities": ["customer"]} for name, target in READERS.items()
    }
    edit(directory, "flows.yaml", lambda doc: doc["flows"].update(readers))
    return directory


def test_two_celery_workers_reading_one_rest_api_stay_under_its_rate_limit_together(
    state: Path, tmp_path: Path, celery_airflow: Callable[[Path], LocalAirflow], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slots of the rate limit are shared through the store (``store.rate_limits``): each worker
    alone would send up to ``CEILING`` a second, so two at once would reach about twice that."""
    airflow = celery_airflow(_two_readers_of_the_crm_api(tmp_path))
    shutil.copyfile(state / "sandbox" / "crm.db", state / "sandbox" / "mirror.db")
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_MIRROR", f"sqlite:///{state / 'sandbox' / 'mirror.db'}")
    compares = [dag_id(flow, compare=True) for flow in READERS]
    airflow.prepare(compares)
    with sandbox_apis(state) as servers:
        airflow.start(("api-server", "scheduler", "dag-processor", "celery-worker", "celery-worker"))
        try:
            for dag in compares:
                airflow.trigger(dag, "manual__read", json.dumps({"dry_run": True}))
            assert [airflow.wait_for_run(dag, "manual__read") for dag in compares] == ["success", "success"]
        finally:
            airflow.stop()
        stats = requests.get(servers["crm_api"].url + "/_stats", timeout=5).json()
    scans = [_span(airflow, dag, "customer.compare") for dag in compares]
    overlap = (min(end for _, end in scans) - max(start for start, _ in scans)).total_seconds()
    assert overlap >= 3, f"the two compares read the API at once for {overlap:.1f}s only: {scans}"
    assert stats["GET /contacts"] >= 10 * CEILING, f"ten seconds of requests at the ceiling: {stats}"
    assert stats["busiest_second"] <= CEILING + 1, stats
    logs = [p.read_text() for p in (state / "airflow" / "process-logs").glob("celery-worker-*.log")]
    workers = [{task for task, _ in WORKLOAD.findall(text) if task == "customer.compare"} for text in logs]
    assert all(workers), "each worker ran one of the compares"


def _span(airflow: LocalAirflow, dag: str, task: str) -> tuple[datetime, datetime]:
    ((_, start, end),) = [t for t in airflow.task_intervals(dag, "manual__read") if t[0].startswith(task + "[")]
    return start, end
