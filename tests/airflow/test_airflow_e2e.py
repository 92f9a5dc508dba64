"""End to end through Airflow: a real backfill, executed by a real scheduler.

The sandbox flows run over the demo days as ``airflow backfill create`` runs; the test
then checks classification against the sandbox's ground truth, the targets against the
sources, the conservation law, and that reprocessing the same range writes nothing. Then
runs triggered by hand: an incremental run and the flows' full compares at once, whose
tasks the target's pool keeps apart. The same test runs with PostgreSQL and MariaDB
targets and a PostgreSQL store when the test database URLs are set, the PostgreSQL
connections holding a canary password that no file Airflow wrote and no XCom row may show.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from canary import CANARY, leaks, with_canary
from sandboxapis import sandbox_apis
from sqlalchemy.engine import URL

from truesync.cli import main as truesync
from truesync.config import Config, load_config
from truesync.core.classify import REPORTED_CLASSES
from truesync.pipeline import dags
from truesync.reporting.report import report_path
from truesync.sandbox import systems as sandbox
from truesync.sandbox.groundtruth import differences, drift, everything, first_results, held_keys
from truesync.sandbox.localairflow import LocalAirflow
from truesync.sandbox.sessions import configured
from truesync.store import Store, queue, runs
from truesync.support.sqldb import open_engine

DAYS = 2  # demo days the sandbox is made for here (the in-process tests run the default three): labels cover them
FIRST = sandbox.DEMO_START
SQL_FLOWS = ("webshop_to_crm", "erp_to_stockctl")
# Backfilled again: one flow per kind of path through Airflow (SQL into SQLite, PostgreSQL and MariaDB,
# composite keys, a REST target, a REST source it reconciles, files). Every flow's rerun writes
# nothing in process too (test_engine, test_accounting_sandbox, test_products_sandbox, ...).
RERUN_FLOWS = (*SQL_FLOWS, "webshop_to_accounting", "webshop_to_crm_api", "payments_to_crm_api", "pos_events_to_crm")
LAST = sandbox.DEMO_START + timedelta(days=DAYS - 1)


def _backfill_all(airflow: LocalAirflow, dag_ids: list[str], reprocess: str) -> dict[str, list]:
    """Create the backfills while the scheduler is down (SQLite metadata), then run them."""
    airflow.backfill(dag_ids, FIRST.isoformat(), LAST.isoformat(), reprocess)
    airflow.start()
    try:
        return airflow.wait_for_backfills(dag_ids)
    finally:
        airflow.stop()


def _target_snapshot(config: Config, flows: list[str]) -> dict[str, list]:
    snapshot = {}
    for flow in flows:
        spec = config.flows[flow]
        for entity in spec.entities:
            rows = everything(config, spec.target, config.entity_mapping(spec.target, entity))
            snapshot[f"{flow}.{entity}"] = sorted(map(tuple, rows.itertuples(index=False)), key=str)
    return snapshot


def _reports(store: Store, flow: str) -> list[dict]:
    return [json.loads(r["report"]) for r in runs.latest(store, flow, 100) if r["report"]]


def _run_sandbox_through_airflow(state: Path, flows: list[str] | None = None) -> None:
    """Backfill the flows (all by default), the REST ones against the sandbox APIs this process serves."""
    config, store = load_config(), Store()
    flows = flows or list(config.flows)
    dag_ids = [dags.dag_id(flow) for flow in flows]
    airflow = LocalAirflow(state / "airflow")
    airflow.prepare(dag_ids + [dags.dag_id(flow, compare=True) for flow in SQL_FLOWS if flow in flows])

    first = _backfill_all(airflow, dag_ids, "none")
    for dag_runs in first.values():
        assert [s for _, s, _ in dag_runs] == ["success"] * DAYS, first
    assert airflow.asset_events() == [], "a backfill starts no flow that waits for its writes (pipeline.dags)"

    labels = pd.read_csv(state / "sandbox" / "labels.csv", keep_default_na=False)
    for flow in flows:
        spec = config.flows[flow]
        wrong = differences(labels[labels["flow"] == flow], first_results(store, flow))
        assert wrong.empty, f"{flow} differs from the ground truth:\n{wrong.to_string()}"
        for entity in spec.entities:
            assert drift(config, flow, entity) <= held_keys(store, flow, entity)
        for report in _reports(store, flow):
            assert all(e["conserved"] for e in report["entities"].values()), report
    written = sum(r["totals"]["created"] + r["totals"]["updated"] for f in flows for r in _reports(store, f))
    assert written > 0
    _check_one_writer(airflow, config, flows, first)
    _check_task_logs(airflow, store, "webshop_to_crm", first["truesync_webshop_to_crm"][0][0])

    before_targets = _target_snapshot(config, flows)
    before_queue = sorted((r["id"], r["key"]) for r in queue.list_exceptions(store))
    again = [flow for flow in flows if flow in RERUN_FLOWS]
    second = _backfill_all(airflow, [dags.dag_id(flow) for flow in again], "completed")
    for dag_runs in second.values():
        assert [(s, n) for _, s, n in dag_runs] == [("success", 1)] * DAYS, second
    rerun = [r for f in flows for r in _reports(store, f) if r["run_id"].endswith("#1")]
    assert len(rerun) == DAYS * len(again)
    assert all(r["totals"]["created"] == 0 and r["totals"]["updated"] == 0 for r in rerun), rerun
    assert _target_snapshot(config, flows) == before_targets
    assert sorted((r["id"], r["key"]) for r in queue.list_exceptions(store)) == before_queue


def _check_one_writer(airflow: LocalAirflow, config: Config, flows: list[str], backfilled: dict[str, list]) -> None:
    """No two ``sync`` tasks writing to one target ran at the same time, though the backfills of
    the flows into it (crm: two flows, crm_api: two) ran together."""
    by_target: dict[str, list[tuple[str, datetime, datetime]]] = {}
    for flow in flows:
        dag = dags.dag_id(flow)
        for run_id, _, _ in backfilled[dag]:
            syncs = [t for t in airflow.task_intervals(dag, run_id) if ".sync[" in t[0]]
            by_target.setdefault(config.flows[flow].target, []).extend(
                (f"{dag} {run_id} {t}", s, e) for t, s, e in syncs
            )
    assert len(flows) < len(config.flows) or len(by_target) < len(flows), "all flows: some target is written by two"
    for target, syncs in by_target.items():
        overlaps = [(a, b) for a in syncs for b in syncs if a[0] < b[0] and a[1] < b[2] and b[1] < a[2]]
        assert not overlaps, f"two writes to {target} ran at the same time: {overlaps[:3]}"


def _task_log(airflow: LocalAirflow, dag_id: str, run_id: str, task_id: str) -> str:
    """The messages of a task's first attempt, from its log file in the Airflow logs folder (JSON lines)."""
    path = airflow.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    path = path / ("map_index=0" if task_id.endswith(".sync") else "") / "attempt=1.log"
    lines = path.read_text().splitlines()
    assert lines, f"{path} is empty"
    return "\n".join(str(json.loads(line).get("event", "")) if line.startswith("{") else line for line in lines)


def _check_task_logs(airflow: LocalAirflow, store: Store, flow: str, dag_run_id: str) -> None:
    """The task logs of one backfill run tell its story: window, counts, held reasons; no secret, no e-mail address."""
    dag_id = f"truesync_{flow}"
    report = json.loads(runs.get(store, f"{flow}:{dag_run_id}")["report"])
    window = f"window {report['window']['start']}..{report['window']['end']}"
    customer = report["entities"]["customer"]
    classes = " ".join(f"{c}={customer['classes'][c]}" for c in REPORTED_CLASSES)
    tasks = ("customer.extract", "customer.sync", "finalize")
    logs = {task: _task_log(airflow, dag_id, dag_run_id, task) for task in tasks}
    extract, sync, finalize = logs.values()
    assert f"extract started: flow {flow}, entity customer, {window}" in extract
    assert "extract customer: batch 1 (window) read" in extract and "extract finished" in extract
    assert f"sync started: flow {flow}, entity customer, {window}, partition p0000" in sync
    assert "sync customer p0000: chunk 1: classified" in sync
    assert f"sync finished: flow {flow}, entity customer, partition p0000" in sync and "classes in_sync=" in sync
    assert f"finalize started: flow {flow}, entities customer, order, {window}" in finalize
    assert f"finalize customer: extracted {customer['extracted']}; classes {classes}; outcomes created=" in finalize
    assert "held customer: " in finalize and "slowest stage " in finalize
    assert f"report {report_path(flow, report['run_id'])}" in finalize
    webshop = open_engine(sandbox.system_urls(load_config())["webshop"])
    try:
        with webshop.connect() as conn:
            emails = {e for (e,) in conn.exec_driver_sql("SELECT email_address FROM customers") if e and "@" in e}
    finally:
        webshop.dispose()
    text = "\n".join(logs.values())
    assert len(emails) > 100 and not [e for e in emails if e in text], "no e-mail address of the data in a task log"
    assert not re.search(r"://[^:/@\s]*:[^@\s]+@", text), "no connection URL with a password in a task log"
    assert not leaks(text), "no password or token of a connection in a task log"


def _manual_runs(state: Path, dry_run: bool) -> None:
    """Runs triggered by hand, without a logical date, all at once: erp_to_stockctl's incremental run and
    its compare, both with ``dry_run``, and webshop_to_crm's compare.

    A dry run writes nothing and keeps the watermark. Each compare reports as one. The pool of
    stockctl kept every task of erp_to_stockctl's compare off the tasks of its incremental run,
    while both runs were running.
    """
    config, store, run, flow = load_config(), Store(), "manual__now", "erp_to_stockctl"
    watermark = runs.watermark(store, flow)
    before = _target_snapshot(config, [flow])
    airflow = LocalAirflow(state / "airflow")
    compare_dags = {f: dags.dag_id(f, compare=True) for f in SQL_FLOWS}
    conf = json.dumps({"dry_run": dry_run})
    for dag in (dags.dag_id(flow), compare_dags[flow]):
        airflow.trigger(dag, run, conf)
    airflow.trigger(compare_dags["webshop_to_crm"], run)
    airflow.start()
    try:
        states = {dag: airflow.wait_for_run(dag, run) for dag in (dags.dag_id(flow), *compare_dags.values())}
    finally:
        airflow.stop()
    assert set(states.values()) == {"success"}, states
    report = json.loads(runs.get(store, f"{flow}:{run}")["report"])
    assert report["dry_run"] is dry_run and ("watermark" in report) is not dry_run
    assert report["window"]["start"] == (watermark - config.flows[flow].lookback).isoformat()
    assert report["totals"]["extracted"] > 0, "open exceptions are retried even by a manual run"
    if dry_run:
        assert _target_snapshot(config, [flow]) == before, "neither dry run wrote"
        assert runs.watermark(store, flow) == watermark
    for compared, dag in compare_dags.items():
        _check_compare_report(store, compared, dags.store_run_id(dag, run, 0), dry_run and compared == flow)
    _check_apart(airflow, compare_dags[flow], dags.dag_id(flow), run)


def _check_compare_report(store: Store, flow: str, run_id: str, dry_run: bool) -> None:
    report = json.loads(runs.get(store, run_id)["report"])
    assert (report["kind"], report["status"], report["dry_run"]) == ("compare", "success", dry_run), report
    assert report_path(flow, run_id).is_file() and Path(report["html"]).is_file()
    assert all(e["conserved"] for e in report["entities"].values()) and "watermark" not in report, report


def _check_apart(airflow: LocalAirflow, compare_dag: str, incremental_dag: str, run: str) -> None:
    """No task of the one DAG run ran while a task of the other did, though both runs were running together."""
    compare, incremental = airflow.task_intervals(compare_dag, run), airflow.task_intervals(incremental_dag, run)
    assert len(compare) >= 6 and len(incremental) >= 5, (compare, incremental)
    overlaps = [(c, i) for c in compare for i in incremental if c[1] < i[2] and i[1] < c[2]]
    assert not overlaps, f"a compare task and an incremental task ran at the same time: {overlaps}"
    (compare_start, compare_end), (start, end) = (airflow.run_span(dag, run) for dag in (compare_dag, incremental_dag))
    assert compare_start < end and start < compare_end, "the two DAG runs were running at the same time"


def test_backfill_through_airflow_on_sqlite(state: Path) -> None:
    assert truesync(["sandbox", "init", "--scale", "300", "--days", str(DAYS)]) == 0
    with sandbox_apis(state, CANARY):
        _run_sandbox_through_airflow(state)
        _manual_runs(state, dry_run=True)
    written, xcom = _what_airflow_holds(LocalAirflow(state / "airflow"))
    assert xcom and not leaks(written) and not leaks(xcom), "the REST APIs' token"


def test_an_unreachable_system_fails_the_run_naming_it_and_never_the_password(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = configured(tmp_path / "config", {"retries": 1, "retry_delay": "1s"})
    monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(config_dir))
    assert truesync(["sandbox", "init", "--scale", "100"]) == 0
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STOCKCTL", "postgresql+psycopg2://sync:s3cr3t-pw@127.0.0.1:1/stock")
    dag_id = "truesync_erp_to_stockctl"
    airflow = LocalAirflow(state / "airflow")
    airflow.prepare([dag_id])
    airflow.trigger(dag_id, "manual__down")
    airflow.start()
    try:
        assert airflow.wait_for_run(dag_id, "manual__down") == "failed"
    finally:
        airflow.stop()
    run = runs.get(Store(), "erp_to_stockctl:manual__down")
    assert run["status"] == "failed" and "stock_item.sync" in json.loads(run["report"])["reason"]
    logs = [p.read_text() for p in (state / "airflow" / "logs").rglob("*.log") if "stock_item" in str(p)]
    sync_logs = "\n".join(logs)
    assert "system 'stockctl'" in sync_logs and "unreachable" in sync_logs
    assert sum(log.count("system 'stockctl'") > 0 for log in logs) >= 2, "the transient failure was retried"
    forms = {"s3cr3t-pw", *(base64.b64encode(f"{user}s3cr3t-pw".encode()).decode() for user in ("", ":", "sync:"))}
    written, xcom = _what_airflow_holds(airflow)
    assert "erp_to_stockctl:manual__down" in xcom, "XCom holds the plan"
    for form in forms:
        assert form not in written and form not in xcom, form


def _what_airflow_holds(airflow: LocalAirflow) -> tuple[str, str]:
    """Every file Airflow wrote (task and process logs, the metadata database and its WAL) and
    every XCom row, as text."""
    written = "\n".join(p.read_bytes().decode("utf-8", "replace") for p in airflow.home.rglob("*") if p.is_file())
    return written, "\n".join(str(row) for row in airflow.query("SELECT * FROM xcom"))


def test_backfill_through_airflow_on_postgres_and_mariadb(
    state: Path, postgres_url: URL, mysql_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_CRM", with_canary(postgres_url))
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STOCKCTL", mysql_url.render_as_string(hide_password=False))
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STORE", with_canary(postgres_url))
    assert truesync(["sandbox", "init", "--scale", "300", "--days", str(DAYS)]) == 0
    _run_sandbox_through_airflow(state, list(SQL_FLOWS))  # the REST flows' targets are not databases
    _manual_runs(state, dry_run=False)
    assert Store().engine.dialect.name == "postgresql"
    written, xcom = _what_airflow_holds(LocalAirflow(state / "airflow"))
    assert xcom and not leaks(written) and not leaks(xcom), "the store's and the CRM's password"
