"""The whole engine over the sandbox: three demo days of both flows, run in-process.

The sandbox systems are SQLite files in a private state directory; ``labels.csv`` is the
ground truth of what the first run that sees each record must report.
"""

from __future__ import annotations

import gc
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sandbox_demo import (
    DEMO_START,
    ERP_FLOW,
    FLOWS,
    SHOP_FLOW,
    SHOP_STATUS,
    SHOP_TIERS,
    Demo,
    DemoDays,
    assert_conserved,
)
from sqlalchemy import func, select, update
from sqlalchemy.engine import URL

from truesync import cli
from truesync.config import load_config
from truesync.pipeline import compare, extract, finalize, load
from truesync.sandbox import systems as sandbox
from truesync.sandbox.groundtruth import differences, first_results
from truesync.store import Store, queue, runs, staging
from truesync.store.schema import audit, ledger, run_entities


def _counts(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in ("extracted", "outcomes", "classes", "overdue")}


# --- classification and conservation ----------------------------------------------------------


def test_first_runs_classify_every_record_as_the_ground_truth_says(demo_days: DemoDays) -> None:
    demo = demo_days.demo
    for report in demo_days.reports:
        assert_conserved(demo, report)
        assert all(body["extracted"] > 0 for body in report["entities"].values()), report["run_id"]
    labels = demo.labels()
    assert set(labels["class"]) == {"in_sync", "missing", "delayed", "overwritten", "mismatched", "invalid", "unseen"}
    checks = {sandbox.IN_SET, sandbox.UNIQUE, sandbox.NOT_NULL, sandbox.REGEX, sandbox.BETWEEN}
    assert checks | {"parent_exists"} <= set(labels["check"])
    for flow in FLOWS:
        diff = differences(labels[labels["flow"] == flow], first_results(demo.store, flow))
        assert diff.empty, f"{flow}:\n{diff.to_string()}"
        last = demo.window(flow, sandbox.DEMO_DAYS - 1)
        assert runs.watermark(demo.store, flow) == last.end


def test_every_record_not_in_the_queue_matches_its_source_after_the_demo_days(demo_days: DemoDays) -> None:
    """On every field the shop owns; the shared addresses are the newer side's (test_shared_addresses.py)."""
    demo = demo_days.demo
    held = demo.active_keys(SHOP_FLOW, "customer")
    contacts = demo.by_key("crm", "contacts", "external_id")
    checked = 0
    for src in demo.rows("webshop", "customers"):
        key = src["ext_id"]
        if key is None or key in held:
            continue
        got = contacts[key]
        assert (got["display_name"], got["phone"]) == (src["full_name"], src["phone"]), key
        assert got["dob"] == date.fromisoformat(src["birth_date"]), key
        assert got["tier"] == sandbox.TIERS_CRM[SHOP_TIERS[src["tier_code"]]], key
        checked += 1
    assert checked > 150

    held = demo.active_keys(SHOP_FLOW, "order")
    deals = demo.by_key("crm", "deals", "order_ref")
    for src in demo.rows("webshop", "orders"):
        key = src["order_no"]
        if key is None or key in held:
            continue
        got = deals[key]
        assert (got["contact_ref"], got["amount"], got["currency"]) == (
            src["customer_ext_id"],
            Decimal(src["total"]),
            src["currency"],
        ), key
        assert got["stage"] == sandbox.STATUS_CRM[SHOP_STATUS[src["status_code"]]], key
        assert got["ordered_on"] == datetime.fromisoformat(src["placed_at"]), key

    held = demo.active_keys(ERP_FLOW, "stock_item")
    items = demo.by_key("stockctl", "stock_items", "sku")
    for src in demo.rows("erp", "items"):
        if src["sku"] is None or src["sku"] in held:
            continue
        got = items[src["sku"]]
        assert (got["title"], got["price"], got["currency"]) == (
            src["description"],
            Decimal(src["unit_price"]),
            src["currency"],
        ), src["sku"]


# --- dry run ----------------------------------------------------------------------------------


def test_dry_run_writes_nothing_and_opens_no_exceptions_but_reports_counts(demo: Demo) -> None:
    for day in range(sandbox.DEMO_DAYS):
        for flow in FLOWS:
            target = demo.config.flows[flow].target
            before = demo.snapshot(target)
            queue_before = demo.exceptions()
            ledger_before, audit_before = demo.count(ledger), demo.count(audit)
            watermark_before = runs.watermark(demo.store, flow)

            dry = demo.run(flow, day, dry_run=True, tag="dry-")

            assert demo.snapshot(target) == before, f"dry run wrote to {target}"
            assert demo.exceptions() == queue_before, "dry run touched the exception queue"
            assert (demo.count(ledger), demo.count(audit)) == (ledger_before, audit_before)
            assert runs.watermark(demo.store, flow) == watermark_before
            assert dry["dry_run"] is True and "watermark" not in dry
            assert runs.get(demo.store, dry["run_id"])["dry_run"] is True
            assert_conserved(demo, dry)
            for body in dry["entities"].values():
                assert body["extracted"] > 0
                assert body["exceptions"] == {"opened": 0, "resolved": 0}

            real = demo.run(flow, day)
            assert_conserved(demo, real)
            for entity, body in dry["entities"].items():
                # Parents held or created earlier in the same run count as they ended, so a dry
                # run predicts the real run exactly, children included.
                assert _counts(body) == _counts(real["entities"][entity]), (flow, day, entity)

    labels = demo.labels()
    for flow in FLOWS:
        assert differences(labels[labels["flow"] == flow], first_results(demo.store, flow)).empty


# --- idempotency ------------------------------------------------------------------------------


def _queue_identity(demo: Demo) -> set[tuple[Any, ...]]:
    return {(e["id"], e["flow"], e["entity"], e["key"], e["check_name"]) for e in demo.exceptions()}


@pytest.mark.parametrize("tag", ["", "again-"], ids=["same-run-ids", "new-run-ids"])
def test_rerunning_the_same_windows_writes_nothing_and_duplicates_nothing(demo: Demo, tag: str) -> None:
    demo.run_demo_days()
    targets = {system: demo.snapshot(system) for system in ("crm", "stockctl")}
    identity = _queue_identity(demo)
    active = {(e["flow"], e["entity"], e["key"]) for e in demo.exceptions() if e["status"] in queue.ACTIVE}
    assert active, "the sandbox leaves records in the queue"
    ledger_rows = demo.count(ledger)

    for report in demo.run_demo_days(tag=tag):
        assert_conserved(demo, report)
        results = staging.run_results(demo.store, report["run_id"])
        for entity, body in report["entities"].items():
            outcomes = body["outcomes"]
            assert (outcomes["created"], outcomes["updated"]) == (0, 0), (report["run_id"], entity, body)
            assert body["exceptions"] == {"opened": 0, "resolved": 0}, (report["run_id"], entity)
            assert outcomes["unchanged"] + outcomes["quarantined"] == body["extracted"]
            mine = results[results["entity"] == entity]
            synced = mine[mine["outcome"] != "quarantined"]
            assert set(synced["class"]) <= {"in_sync"} and set(synced["outcome"]) <= {"unchanged"}
            held = {(report["flow"], entity, k) for k in mine.loc[mine["outcome"] == "quarantined", "key"]}
            assert held <= active, held - active

    assert {system: demo.snapshot(system) for system in ("crm", "stockctl")} == targets
    assert _queue_identity(demo) == identity
    assert {(e["flow"], e["entity"], e["key"]) for e in demo.exceptions() if e["status"] in queue.ACTIVE} == active
    assert demo.count(ledger) == ledger_rows


# --- the exception queue resolves itself --------------------------------------------------------


@pytest.mark.parametrize("touch_cursor", [False, True], ids=["found-by-retry", "changed-in-window"])
def test_exception_resolves_itself_and_the_waiting_child_follows(demo: Demo, touch_cursor: bool) -> None:
    demo.run_demo_days()
    labels = demo.labels()
    shop = labels[labels["flow"] == SHOP_FLOW]
    customer_key = shop.loc[(shop["entity"] == "customer") & (shop["check"] == sandbox.IN_SET), "key"].iloc[0]
    waiting = shop.loc[(shop["entity"] == "order") & (shop["check"] == "parent_exists"), "key"]
    orders = demo.by_key("webshop", "orders", "order_no")
    order_key = next(k for k in waiting if orders[k]["customer_ext_id"] == customer_key)

    parent = demo.exception(SHOP_FLOW, "customer", customer_key)
    child = demo.exception(SHOP_FLOW, "order", order_key)
    assert (parent["check_name"], parent["class"]) == (sandbox.IN_SET, "invalid")
    assert (child["check_name"], child["class"], child["field"]) == ("parent_exists", "missing", "customer_id")
    assert parent["status"] in queue.ACTIVE and child["status"] in queue.ACTIVE
    assert customer_key in child["reason"] and f"#{parent['id']}" in child["reason"]
    assert order_key not in demo.by_key("crm", "deals", "order_ref")
    others = demo.active_keys(SHOP_FLOW, "customer") - {customer_key}

    # Fix the cause in the source: a tier the CRM does not have yet, so the fix must travel.
    crm_tier = demo.by_key("crm", "contacts", "external_id")[customer_key]["tier"]
    new_tier = "silver" if crm_tier == sandbox.TIERS_CRM["gold"] else "gold"
    values: dict[str, Any] = {"tier_code": sandbox.TIERS_SHOP[new_tier]}
    if touch_cursor:
        values["updated_at"] = DEMO_START + timedelta(days=sandbox.DEMO_DAYS, hours=1)
    customers = demo.table("webshop", "customers")
    with demo.engine("webshop").begin() as conn:
        assert conn.execute(update(customers).where(customers.c.ext_id == customer_key).values(values)).rowcount == 1

    report = demo.run(SHOP_FLOW, sandbox.DEMO_DAYS)
    assert_conserved(demo, report)
    parent, child = demo.exception(SHOP_FLOW, "customer", customer_key), demo.exception(SHOP_FLOW, "order", order_key)
    assert (parent["status"], child["status"]) == ("resolved", "resolved")
    assert report["run_id"] in parent["note"] and report["run_id"] in child["note"]
    assert report["entities"]["customer"]["exceptions"]["resolved"] >= 1
    assert report["entities"]["order"]["exceptions"]["resolved"] >= 1
    results = staging.run_results(demo.store, report["run_id"]).set_index(["entity", "key"])
    assert results.loc[("customer", customer_key), "outcome"] == "updated"
    assert results.loc[("order", order_key), ["class", "outcome"]].tolist() == ["missing", "created"]

    assert demo.by_key("crm", "contacts", "external_id")[customer_key]["tier"] == sandbox.TIERS_CRM[new_tier]
    deal = demo.by_key("crm", "deals", "order_ref")[order_key]
    assert deal["contact_ref"] == customer_key
    assert deal["amount"] == Decimal(orders[order_key]["total"])
    assert demo.active_keys(SHOP_FLOW, "customer") == others, "other exceptions stay in the queue"

    # The next run leaves them resolved and opens nothing new for them.
    later = demo.run(SHOP_FLOW, sandbox.DEMO_DAYS + 1)
    assert_conserved(demo, later)
    assert demo.exception(SHOP_FLOW, "customer", customer_key)["status"] == "resolved"
    assert demo.exception(SHOP_FLOW, "order", order_key)["status"] == "resolved"


def test_a_row_without_a_key_resolves_once_it_gets_one(demo: Demo) -> None:
    demo.run_demo_days()
    keyless = [e for e in demo.exceptions(SHOP_FLOW, "customer") if e["check_name"] == sandbox.NOT_NULL]
    assert len(keyless) == 1 and keyless[0]["status"] in queue.ACTIVE
    assert keyless[0]["field"] == "customer_id" and "must not be null" in keyless[0]["reason"]
    customers = demo.table("webshop", "customers")
    with demo.engine("webshop").begin() as conn:
        fixed = {"ext_id": "C9999999", "updated_at": DEMO_START + timedelta(days=sandbox.DEMO_DAYS, hours=1)}
        assert conn.execute(update(customers).where(customers.c.ext_id.is_(None)).values(fixed)).rowcount == 1

    report = demo.run(SHOP_FLOW, sandbox.DEMO_DAYS)
    assert_conserved(demo, report)
    assert demo.exception(SHOP_FLOW, "customer", keyless[0]["key"])["status"] == "resolved"
    assert "C9999999" in demo.by_key("crm", "contacts", "external_id")


# --- ownership and the audit trail --------------------------------------------------------------


def test_fields_owned_by_the_target_are_never_changed(demo_days: DemoDays) -> None:
    demo = demo_days.demo
    segments = {k: r["segment"] for k, r in demo_days.before_by_key("crm", "contacts", "external_id").items()}
    quantities = {k: r["qty"] for k, r in demo_days.before_by_key("stockctl", "stock_items", "sku").items()}
    assert any(segments.values()) and any(q is not None for q in quantities.values())

    contacts = demo.by_key("crm", "contacts", "external_id")
    assert len(contacts) > len(segments), "the flow created contacts"
    for key, row in contacts.items():
        assert row["segment"] == segments.get(key), key
    items = demo.by_key("stockctl", "stock_items", "sku")
    assert len(items) > len(quantities)
    for key, row in items.items():
        assert row["qty"] == quantities.get(key), key


def _audit_rows(demo: Demo, flow: str, entity: str) -> pd.DataFrame:
    query = select(audit).where(audit.c.flow == flow, audit.c.entity == entity)
    with demo.store.engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).mappings().all(), columns=[c.name for c in audit.c])


@pytest.mark.parametrize(
    ("flow", "entity", "system", "table", "key", "column", "field"),
    [
        (SHOP_FLOW, "customer", "crm", "contacts", "external_id", "phone", "phone"),
        (SHOP_FLOW, "order", "crm", "deals", "order_ref", "amount", "total"),
        (ERP_FLOW, "stock_item", "stockctl", "stock_items", "sku", "price", "price"),
    ],
    ids=["customer-phone", "order-total", "stock-price"],
)
def test_overwritten_values_are_restored_and_kept_in_the_audit_trail(
    demo_days: DemoDays, flow: str, entity: str, system: str, table: str, key: str, column: str, field: str
) -> None:
    demo = demo_days.demo
    labels = demo.labels()
    overwritten = set(
        labels.loc[(labels["flow"] == flow) & (labels["entity"] == entity) & (labels["class"] == "overwritten"), "key"]
    )
    assert overwritten
    before = demo_days.before_by_key(system, table, key)
    after = demo.by_key(system, table, key)
    trail = _audit_rows(demo, flow, entity)
    assert set(trail["key"]) == overwritten, "only overwritten records are audited"
    assert set(trail["field"]) == {field}
    for k in overwritten:
        row = trail[trail["key"] == k].iloc[0]
        assert len(trail[trail["key"] == k]) == 1
        assert row["overwritten_value"] == str(before[k][column]), k
        assert row["restored_value"] == str(after[k][column]), k
        assert after[k][column] != before[k][column], k
        result = staging.run_results(demo.store, row["run_id"], entity).set_index("key")
        assert result.loc[k, ["class", "outcome"]].tolist() == ["overwritten", "updated"]
    if entity == "customer":
        shop = demo.by_key("webshop", "customers", "ext_id")
        for k in overwritten:
            assert before[k]["phone"] == shop[k]["phone"] + "9", "a digit too many, typed in the CRM"
            assert after[k]["phone"] == shop[k]["phone"]
            assert after[k]["segment"] == before[k]["segment"], "restoring never touches CRM-owned fields"


# --- the garbage collector walks the chunks, not the imports (support.collector) ---------------


def test_every_stage_works_its_chunks_with_the_objects_alive_at_its_start_frozen(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, int]] = []

    def probe(module: Any, name: str) -> None:
        real = getattr(module, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            seen.append((name, gc.get_freeze_count()))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    for module, name in ((extract, "prepare"), (load, "_sync_chunk"), (finalize, "post_load_checks")):
        probe(module, name)
    probe(compare, "_scan")
    demo.run(SHOP_FLOW, 0)
    compare.run_compare(demo.config, demo.store, SHOP_FLOW, f"{SHOP_FLOW}:compare")

    assert {name for name, _ in seen} == {"prepare", "_sync_chunk", "post_load_checks", "_scan"}
    assert all(count > 10_000 for _, count in seen), seen  # the engine's, pandas' and GX's modules at least
    assert gc.get_freeze_count() == 0, "a stage left objects frozen"


# --- partitions: mapped sync tasks share one entity's delta -------------------------------------


def test_small_partitions_give_the_same_results_as_one(state: Path) -> None:
    assert cli.main(["sandbox", "init", "--scale", "200"]) == 0
    config = load_config()
    for flow in config.flows.values():
        flow.partition_size = 7
    demo = Demo(config, Store(), state, sandbox.system_urls(config))
    try:
        for report in demo.run_demo_days():
            assert_conserved(demo, report)
        labels = demo.labels()
        for flow in FLOWS:
            assert differences(labels[labels["flow"] == flow], first_results(demo.store, flow)).empty
        with demo.store.engine.connect() as conn:
            sync_parts = conn.execute(
                select(func.count()).select_from(run_entities).where(run_entities.c.part.like("p%"))
            ).scalar()
        assert sync_parts > 3 * len(FLOWS) * 3, "each entity was split into several partitions"
    finally:
        demo.close()


def test_chunks_of_a_few_records_give_the_same_results_queue_and_ledger_as_one(
    state: Path, demo_days: DemoDays
) -> None:
    """Several chunks per entity, each staged behind the next one's read and checks, and each
    recorded behind the next one's classification (``support.overlap``): nothing differs from
    the runs that took every record in one chunk.
    """
    assert cli.main(["sandbox", "init", "--scale", "200"]) == 0
    config = load_config()
    for flow in config.flows.values():
        flow.chunk_size = flow.quality.batch_rows = 3
    demo = Demo(config, Store(), state, sandbox.system_urls(config))
    try:
        reports = demo.run_demo_days()
        for report, one_chunk in zip(reports, demo_days.reports, strict=True):
            assert_conserved(demo, report)
            assert max(body["extracted"] for body in report["entities"].values()) > 2 * 3, report["run_id"]
            for entity, body in report["entities"].items():
                assert body["exceptions"] == one_chunk["entities"][entity]["exceptions"], (report["run_id"], entity)
        labels = demo.labels()
        for flow in FLOWS:
            assert differences(labels[labels["flow"] == flow], first_results(demo.store, flow)).empty
            for entity in config.flows[flow].entities:  # each exception was counted by the run that opened it
                held = demo.exceptions(flow, entity)
                counted = [r["entities"][entity]["exceptions"] for r in reports if r["flow"] == flow]
                assert sum(c["opened"] for c in counted) >= len(held) > 0, (flow, entity)
                assert sum(c["resolved"] for c in counted) >= sum(e["status"] == "resolved" for e in held)

        def queue_and_ledger(handle: Demo) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
            held = {(e["flow"], e["entity"], e["key"], e["check_name"], e["status"]) for e in handle.exceptions()}
            columns = [ledger.c[c] for c in ("flow", "entity", "key", "source_hash", "target_hash", "source_ts")]
            with handle.store.engine.connect() as conn:
                return held, set(conn.execute(select(*columns)).all())

        assert queue_and_ledger(demo) == queue_and_ledger(demo_days.demo)
    finally:
        demo.close()


def test_partitions_tile_the_staged_keys(state: Path) -> None:
    store = Store()
    keys = [f"K{i:03d}" for i in range(23)]
    staging.stage(store, "r", "e", [{"key": k, "source_ts": None, "payload": "{}", "check_name": None,
                                      "field": None, "reason": None} for k in keys])  # fmt: skip
    parts = staging.partitions(store, "r", "e", 5)
    assert len(parts) == 5 and parts[0].lo is None and parts[-1].hi is None
    seen = [k for p in parts for chunk in staging.staged_chunks(store, "r", "e", 2, p) for k in chunk["key"]]
    assert seen == keys
    assert [len(list(staging.staged_chunks(store, "r", "e", 100, p))[0]) for p in parts] == [5, 5, 5, 5, 3]


def test_a_key_matching_only_by_mariadb_collation_is_held_not_written_over(
    state: Path, mysql_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STOCKCTL", mysql_url.render_as_string(hide_password=False))
    assert cli.main(["sandbox", "init", "--scale", "100"]) == 0
    config = load_config()
    demo = Demo(config, Store(), state, sandbox.system_urls(config))
    try:
        existing = demo.by_key("stockctl", "stock_items", "sku")["SKU-000000"]
        items = demo.table("erp", "items")
        with demo.engine("erp").begin() as conn:
            conn.execute(items.insert().values(sku="sku-000000", description="lower-case twin", unit_price="9.99",
                                               currency="EUR", changed_at=DEMO_START + timedelta(hours=3)))  # fmt: skip
        report = demo.run(ERP_FLOW, 0)
        assert_conserved(demo, report)
        held = demo.exception(ERP_FLOW, "stock_item", "sku-000000")
        assert held["check_name"] == "unique_match" and "SKU-000000" in held["reason"]
        assert demo.by_key("stockctl", "stock_items", "sku")["SKU-000000"]["title"] == existing["title"]
    finally:
        demo.close()


@pytest.mark.parametrize("stock_control", ["sqlite", "mariadb"])
def test_two_new_keys_differing_only_in_case_are_both_held_where_the_target_does_not_tell_case_apart(
    state: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, stock_control: str
) -> None:
    """On MariaDB (its default collation) the second upsert of ``SKU-TWIN`` and ``sku-twin`` would land
    on the first's row, quietly: both wait, naming each other, and the rest of the run loads. SQLite's
    default tells them apart: two items."""
    if stock_control == "mariadb":
        url = request.getfixturevalue("mysql_url")
        monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STOCKCTL", url.render_as_string(hide_password=False))
    assert cli.main(["sandbox", "init", "--scale", "100"]) == 0
    config = load_config()
    demo = Demo(config, Store(), state, sandbox.system_urls(config))
    twins = ("SKU-TWIN", "sku-twin")
    try:
        items = demo.table("erp", "items")
        with demo.engine("erp").begin() as conn:
            for n, sku in enumerate(twins):
                conn.execute(items.insert().values(sku=sku, description=f"twin {n}", unit_price="9.99", currency="EUR",
                                                   changed_at=DEMO_START + timedelta(hours=3, minutes=n)))  # fmt: skip
        report = demo.run(ERP_FLOW, 0)
        assert_conserved(demo, report)
        stock = demo.by_key("stockctl", "stock_items", "sku")
        results = staging.run_results(demo.store, report["run_id"], "stock_item").set_index("key")
        created = int((results["outcome"] == "created").sum())
        if stock_control == "sqlite":
            assert set(twins) <= set(stock) and created > 2, "two items, and the rest"
            return
        assert not {t.casefold() for t in twins} & {s.casefold() for s in stock}, "neither twin is written"
        assert created > 0, "the rest of the run loads"
        for sku, other in (twins, twins[::-1]):
            held = demo.exception(ERP_FLOW, "stock_item", sku)
            assert (held["check_name"], held["field"]) == ("unique_match", "sku")
            assert held["reason"] == (f"key '{sku}' and '{other}' differ only in case, "
                                      "which target 'stockctl' does not tell apart")  # fmt: skip
            assert tuple(results.loc[sku, ["class", "outcome"]]) == ("mismatched", "quarantined")
    finally:
        demo.close()
