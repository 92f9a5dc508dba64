"""The quiet drift ``sandbox init`` plans (``truesync.sandbox.drift``): from the seed, on records it may change.

The compare that finds it runs in ``tests/integration/test_compare_drift.py``; here only the
plan, built in memory from the generated rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

import pytest

from truesync.config import Config, load_config
from truesync.config.models import DeletesConfig
from truesync.sandbox import DEMO_DAYS, DEMO_START, drift, systems

SCALE = 200
FIRST = datetime.combine(DEMO_START, datetime.min.time())


@cache
def _built(seed: int) -> systems.Rows:
    return systems.build(SCALE, seed)


def _plan(seed: int = 7, config: Config | None = None) -> drift.Plan:
    return drift.plan(config or load_config(), _built(seed), seed, DEMO_START, DEMO_DAYS)


def test_the_plan_follows_the_seed() -> None:
    assert _plan(7) == _plan(7)
    assert _plan(7).labels != _plan(8).labels


def test_every_kind_for_every_entity_of_the_sql_flows_and_all_quiet() -> None:
    plan, config = _plan(), load_config()
    assert drift.compare_flows(config) == ["webshop_to_crm", "erp_to_stockctl"]
    for flow in drift.compare_flows(config):
        for entity in config.flows[flow].entities:
            kinds = {lab["class"] for lab in plan.labels if (lab["flow"], lab["entity"]) == (flow, entity)}
            assert kinds == {"overwritten", "deleted", "target_only", "delayed", "missing"}, (flow, entity)
    assert all(lab["quiet"] is True for lab in plan.labels)
    keys = [(lab["flow"], lab["entity"], lab["key"]) for lab in plan.labels]
    assert len(keys) == len(set(keys)), "one kind per record"


def test_edits_and_deletes_change_records_the_demo_days_leave_in_sync_and_only_the_owned_field() -> None:
    rows, plan, config = _built(7), _plan(), load_config()
    settled = {(lab["flow"], lab["entity"], lab["key"]) for lab in rows.labels
               if lab["class"] in drift.IN_SYNC_AFTER_DEMO and not lab["check"]}  # fmt: skip
    changed = [c for c in plan.changes if c.kind in drift.SYNCED_KINDS]
    assert changed and all((c.flow, c.entity, c.key) in settled for c in changed)
    for change in changed:
        if change.op == "update":
            mapping = config.entity_mapping(change.system, change.entity)
            assert list(change.values) == [mapping.fields[drift.EDITS[change.entity][0]]], change
            assert mapping.cursor not in change.values


def test_a_deleted_customer_has_no_orders_on_either_side() -> None:
    rows, plan = _built(7), _plan()
    deleted = {c.key for c in plan.changes if c.kind == "deleted" and c.entity == "customer"}
    parents = {r["customer_ext_id"] for r in rows.tables[("webshop", "orders")]}
    parents |= {r["contact_ref"] for r in rows.tables[("crm", "deals")]}
    assert deleted and not deleted & parents


def test_new_records_take_new_keys_and_a_change_time_before_the_demo_days_end() -> None:
    rows, plan, config = _built(7), _plan(), load_config()
    inserts = [c for c in plan.changes if c.op == "insert"]
    assert {c.kind for c in inserts} == {"target_only", "missing"}
    generated = {str(v) for table in rows.tables.values() for row in table for v in row.values()}
    customers = {r["external_id"] for r in rows.tables[("crm", "contacts")]}  # at init, or created by a demo day:
    customers |= {lab["key"] for lab in rows.labels if lab["entity"] == "customer" and lab["outcome"] == "created"}
    deleted = {c.key for c in plan.changes if c.kind == "deleted"}
    for change in inserts:
        assert change.key not in generated, change.key
        cursor = config.entity_mapping(change.system, change.entity).cursor
        assert FIRST <= change.values[cursor] < FIRST + timedelta(days=DEMO_DAYS)
        if change.entity == "order" and change.kind == "missing":
            assert change.values["customer_ext_id"] in customers - deleted, (
                "its customer is in the target after the demo days"
            )


@pytest.mark.parametrize(
    ("policy", "outcome"), [("report", "reported"), ("soft", "soft_deleted"), ("delete", "removed")]
)
def test_a_deleted_records_outcome_is_its_flows_delete_policy(policy: str, outcome: str) -> None:
    config = load_config()
    column = "segment" if policy == "soft" else None
    config.flows["webshop_to_crm"].compare.deletes["order"] = DeletesConfig(policy=policy, column=column)
    labels = _plan(config=config).labels
    got = {
        (lab["entity"], lab["outcome"])
        for lab in labels
        if lab["class"] == "deleted" and lab["flow"] == "webshop_to_crm"
    }
    assert got == {("order", outcome), ("customer", "reported")}
