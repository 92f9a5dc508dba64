"""DAG integrity: every DAG file imports, two DAGs per flow, wired as the design says."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from types import SimpleNamespace

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import AssetAlias, AssetOrTimeSchedule, CronDataIntervalTimetable, CronTriggerTimetable
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import TimeRestriction

from truesync.config import load_config
from truesync.pipeline.dags import (
    asset_uri,
    dag_id,
    emits,
    run_key,
    store_run_id,
    translated_entities,
    triggered_until,
)
from truesync.support.paths import PROJECT_ROOT

COMPARE = "truesync_webshop_to_crm_compare"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_every_dag_file_imports(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}


def test_parsing_the_dag_file_leaves_great_expectations_unimported() -> None:
    """The DAG processor parses the file every 30 s; GX would add seconds to each parse."""
    code = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('flows', {str(PROJECT_ROOT / 'dags' / 'truesync_flows.py')!r});"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec));"
        "print(sorted(m for m in sys.modules if m.startswith('great_expectations'))[:3])"
    )
    parsed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert parsed.stdout.strip() == "[]"


def test_two_dags_per_flow_and_a_reprocess_dag_for_flows_with_code_tables(dagbag: DagBag) -> None:
    config = load_config()
    flows = config.flows
    translating = {f for f in flows if translated_entities(config, f)}
    assert translating == {"pos_events_to_crm"}
    assert set(dagbag.dag_ids) == (
        {f"truesync_{f}" for f in flows} | {f"truesync_{f}_compare" for f in flows}
        | {f"truesync_{f}_reprocess" for f in translating}
    )  # fmt: skip
    reprocess = dagbag.dags["truesync_pos_events_to_crm_reprocess"]
    assert reprocess.schedule is None and set(reprocess.params) == {"dry_run", "code_table"}
    assert sorted(t.task_id for t in reprocess.tasks if t.task_id.startswith("pos_event.")) == [
        "pos_event.partition", "pos_event.stage", "pos_event.sync"]  # fmt: skip
    crm_slots = load_config().systems["crm"].max_parallel_tasks
    for task in reprocess.tasks:
        assert (task.pool, task.pool_slots) == ("truesync_crm", crm_slots if task.task_id.endswith(".sync") else 1)


def test_schedule_has_real_data_intervals(dagbag: DagBag) -> None:
    config = load_config()
    for flow, dag in ((flow, dagbag.dags[dag_id(flow)]) for flow in config.flows):
        timetable = dag.timetable
        if config.flows[flow].triggered_by:
            assert isinstance(timetable, AssetOrTimeSchedule), dag.dag_id
            timetable = timetable.timetable
        assert isinstance(timetable, CronDataIntervalTimetable), dag.dag_id
        assert dag.catchup is False
        assert dag.max_active_runs == 1
        assert dag.doc_md and "Window" in dag.doc_md


def test_entity_groups_follow_dependency_order(dagbag: DagBag) -> None:
    dag = dagbag.dags["truesync_webshop_to_crm"]
    order = [t.task_id for t in dag.topological_sort()]
    assert order.index("customer.sync") < order.index("order.extract")
    assert dag.get_task("order.extract").upstream_task_ids == {"plan", "customer.sync"}
    assert dag.get_task("customer.sync").upstream_task_ids == {"plan", "customer.partition"}
    assert dag.get_task("customer.partition").upstream_task_ids == {"plan", "customer.extract"}
    assert order[0] == "plan"
    assert dag.get_task("finalize").upstream_task_ids == {"plan", "order.sync"}


def test_global_load_order_puts_parents_first() -> None:
    order = load_config().load_order()
    assert order == ["customer", "order", "stock_item", "product", "invoice", "payment", "store_price", "pos_event",
                     "order_line", "contact", "compliance_status", "asset_inspection"]  # fmt: skip


def test_sync_tasks_name_an_asset_per_target_entity(dagbag: DagBag) -> None:
    dag = dagbag.dags["truesync_webshop_to_crm"]
    outlets = {(type(o), o.name) for t in dag.tasks for o in t.outlets}
    assert outlets == {(AssetAlias, "crm.customer"), (AssetAlias, "crm.order")}
    assert asset_uri("crm.customer") == "truesync://crm/customer"


def test_a_flow_triggered_by_another_flows_asset_runs_on_its_cron_or_on_a_write_there(dagbag: DagBag) -> None:
    """webshop_to_accounting also runs when webshop_to_stockctl wrote products into stock control."""
    timetable = dagbag.dags["truesync_webshop_to_accounting"].timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert timetable.timetable.expression == "0 0 * * *"
    assert [a.uri for a in timetable.asset_condition.objects] == ["truesync://stockctl/product"]
    assert "**Also started by** the Assets `stockctl.product`" in dagbag.dags["truesync_webshop_to_accounting"].doc_md
    producer = dagbag.dags["truesync_webshop_to_stockctl"].get_task("product.sync")
    assert [o.name for o in producer.outlets] == ["stockctl.product"]


def test_a_sync_emits_its_assets_event_only_for_a_write_outside_backfills_and_dry_runs() -> None:
    wrote, nothing = {"created": 1, "unchanged": 4}, {"unchanged": 5, "quarantined": 1}
    assert emits("manual", False, wrote) and emits("scheduled", False, {"updated": 2})
    assert emits("asset_triggered", False, wrote)
    assert not emits("backfill", False, wrote), "a backfill would start the waiting flow once per interval"
    assert not emits("manual", True, wrote) and not emits("scheduled", False, nothing)


def test_a_run_an_asset_started_reaches_the_latest_window_end_among_its_events() -> None:
    def event(extra: dict) -> SimpleNamespace:
        return SimpleNamespace(extra=extra)

    ends = ("2026-11-02T00:00:00", "2026-11-03T00:00:00")
    events = {"stockctl.product": [event({"window_end": end}) for end in ends], "other": [event({})]}
    assert triggered_until(events) == datetime(2026, 11, 3)
    assert triggered_until({"other": [event({})]}) is None and triggered_until({}) is None


def test_retries_back_off(dagbag: DagBag) -> None:
    task = dagbag.dags["truesync_erp_to_stockctl"].get_task("stock_item.sync")
    assert task.retries == 3
    assert task.retry_exponential_backoff
    assert task.max_retry_delay == timedelta(minutes=30)


def test_sync_is_mapped_over_partitions(dagbag: DagBag) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag = dagbag.dags["truesync_webshop_to_crm"]
    assert isinstance(dag.get_task("order.sync"), MappedOperator)


def test_failure_recorder_runs_only_on_failure(dagbag: DagBag) -> None:
    task = dagbag.dags["truesync_webshop_to_crm"].get_task("record_failure")
    assert task.trigger_rule == "one_failed"
    assert {"customer.sync", "order.sync"} <= task.upstream_task_ids


def test_compare_dag_plans_compares_each_entity_in_order_then_deletes_and_finalizes(dagbag: DagBag) -> None:
    dag = dagbag.dags[COMPARE]
    assert [t.task_id for t in dag.topological_sort()] == [
        "plan",
        *(f"{entity}.{stage}" for entity in ("customer", "order") for stage in ("compare", "partition", "sync")),
        "deletes",
        "finalize",
        "record_failure",
    ]
    assert dag.get_task("customer.compare").upstream_task_ids == {"plan"}
    assert dag.get_task("order.compare").upstream_task_ids == {"plan", "customer.sync"}
    assert dag.get_task("order.sync").upstream_task_ids == {"plan", "order.partition"}
    assert dag.get_task("deletes").upstream_task_ids == {"plan", "order.sync"}
    assert dag.get_task("finalize").upstream_task_ids == {"plan", "deletes"}
    failure = dag.get_task("record_failure")
    assert failure.trigger_rule == "one_failed" and failure.retries == 0
    assert failure.upstream_task_ids == {"plan", "customer.sync", "order.sync", "deletes"}


def test_compare_dag_runs_on_the_compare_schedule_and_waits_for_it_when_unpaused(
    dagbag: DagBag, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compare covers everything: no data interval, and unpausing does not start one at once,
    not even a minute after a scheduled time (Airflow would run that one by default).
    """
    for flow, spec in load_config().flows.items():
        dag = dagbag.dags[dag_id(flow, compare=True)]
        assert isinstance(dag.timetable, CronTriggerTimetable), dag.dag_id
        assert (dag.timetable.expression, str(dag.timetable.timezone)) == (spec.compare.schedule, "UTC")
        assert dag.catchup is False and dag.max_active_runs == 1 and dag.start_date is None
        timetable = coerce_to_core_timetable(dag.timetable)
        latest = timetable._align_to_prev(pendulum.now("UTC"))  # the latest scheduled time (a private helper)
        unpaused = latest + timedelta(minutes=1)
        monkeypatch.setattr("airflow.timetables.trigger.utcnow", lambda at=unpaused: at)
        first = timetable.next_dagrun_info(
            last_automated_data_interval=None, restriction=TimeRestriction(earliest=None, latest=None, catchup=False)
        )
        assert first is not None and first.run_after > unpaused, (dag.dag_id, first)
        assert dag.params["dry_run"] is False
        assert "compare" in dag.tags
        assert dag.doc_md and "full compare" in dag.doc_md and f"`{spec.compare.schedule}`" in dag.doc_md


def test_compare_sync_is_mapped_and_emits_the_target_assets(dagbag: DagBag) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag = dagbag.dags[COMPARE]
    assert isinstance(dag.get_task("customer.sync"), MappedOperator)
    assert {o.name for t in dag.tasks for o in t.outlets} == {"crm.customer", "crm.order"}


def test_both_dags_of_a_flow_run_in_the_target_pool_a_writing_or_compare_task_taking_all_of_it(
    dagbag: DagBag,
) -> None:
    config = load_config()
    for flow, spec in config.flows.items():
        pool, slots = f"truesync_{spec.target}", config.systems[spec.target].max_parallel_tasks
        assert slots > 1
        for task in dagbag.dags[dag_id(flow)].tasks:
            assert (task.pool, task.pool_slots) == (pool, slots if task.task_id.endswith(".sync") else 1), task
            assert task.weight_rule == "downstream"
        for task in dagbag.dags[dag_id(flow, compare=True)].tasks:
            assert (task.pool, task.pool_slots) == (pool, slots), task
            assert (task.priority_weight, task.weight_rule) == (1000, "absolute"), task
    assert config.flows["webshop_to_crm_api"].target == config.flows["payments_to_crm_api"].target, "a shared pool"


def test_the_two_dags_runs_have_distinct_store_run_ids() -> None:
    """The DAGs' scheduled run ids can be equal; the store keeps them apart, and the report link finds each."""
    airflow_run = "scheduled__2026-11-29T00:00:00+00:00"
    assert store_run_id("truesync_webshop_to_crm", airflow_run, 0) == f"webshop_to_crm:{airflow_run}"
    assert store_run_id(COMPARE, airflow_run, 0) == f"webshop_to_crm:compare:{airflow_run}"
    assert store_run_id(COMPARE, airflow_run, 2) == f"webshop_to_crm:compare:{airflow_run}#2"
    assert run_key(COMPARE, airflow_run) == ("webshop_to_crm", f"compare:{airflow_run}")
    assert run_key("truesync_webshop_to_crm", airflow_run) == ("webshop_to_crm", airflow_run)
    reprocess = "truesync_pos_events_to_crm_reprocess"
    assert store_run_id(reprocess, "manual__x", 0) == "pos_events_to_crm:reprocess:manual__x"
