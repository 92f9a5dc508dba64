"""Loading, validating and cross-checking the YAML configuration."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from config_edits import SHIPPED, edit, expect_error

from truesync.cli import main
from truesync.config import ConfigError, EntityMapping, MinorUnits, load_config, parse_duration
from truesync.connectors.kinds import KINDS
from truesync.connectors.rest.settings import RestConfig

# ---------------------------------------------------------------- the shipped configuration


def test_shipped_config_loads() -> None:
    config = load_config(SHIPPED)
    assert set(config.systems) == {"webshop", "erp", "crm", "stockctl", "accounting", "compliance", "crm_api",
                                   "payments", "pos_events", "pos"}  # fmt: skip
    assert set(config.entities) == {"customer", "order", "stock_item", "product", "invoice", "payment", "store_price",
                                    "pos_event", "order_line", "contact", "compliance_status",
                                    "asset_inspection"}  # fmt: skip
    assert set(config.flows) == {"webshop_to_crm", "crm_to_webshop", "crm_to_accounting", "webshop_to_accounting",
                                 "compliance_to_crm", "erp_to_stockctl", "webshop_to_stockctl", "webshop_to_crm_api",
                                 "payments_to_crm_api", "pos_events_to_crm", "erp_to_pos"}  # fmt: skip
    assert config.shared_fields("compliance_to_crm", "compliance_status") == ["notes"]
    assert config.shared_fields("crm_to_accounting", "contact") == ["email", "address"]
    assert config.entities["order_line"].key_fields == ["order_id", "line_no"]
    assert config.entity_mapping("pos_events", "pos_event").tables["state"].label == "pos_events@1"
    flow = config.flows["webshop_to_crm"]
    assert (flow.source, flow.target) == ("webshop", "crm")
    assert flow.lookback == timedelta(hours=2)
    assert flow.freshness_sla == timedelta(hours=6)
    assert flow.start_date == date(2026, 10, 1)
    assert config.mappings["webshop"].version == "3"
    assert config.entity_mapping("webshop", "customer").codes["tier"]["G"] == "gold"


def test_shipped_config_load_order() -> None:
    config = load_config(str(SHIPPED))
    assert config.load_order() == ["customer", "order", "stock_item", "product", "invoice", "payment", "store_price",
                                   "pos_event", "order_line", "contact", "compliance_status",
                                   "asset_inspection"]  # fmt: skip
    assert config.load_order(["order", "customer"]) == ["customer", "order"]
    assert config.load_order(["order"]) == ["order"]


def test_load_order_puts_parents_first_whatever_the_declaration_order(cfg: Path) -> None:
    def reorder(doc: dict[str, Any]) -> None:
        entities = doc["entities"]
        names = ("asset_inspection", "compliance_status", "contact", "order_line", "pos_event", "store_price",
                 "payment", "invoice", "order", "product", "stock_item", "customer")  # fmt: skip
        doc["entities"] = {name: entities[name] for name in names}

    edit(cfg, "entities.yaml", reorder)
    config = load_config(cfg)
    assert list(config.entities) == ["asset_inspection", "compliance_status", "contact", "order_line", "pos_event",
                                     "store_price", "payment", "invoice", "order", "product", "stock_item",
                                     "customer"]  # fmt: skip
    order = config.load_order()
    assert order.index("customer") < order.index("order") < order.index("payment")
    assert order.index("order") < order.index("pos_event") and order.index("order") < order.index("order_line")
    assert order.index("customer") < order.index("contact")
    assert sorted(order) == ["asset_inspection", "compliance_status", "contact", "customer", "invoice", "order",
                             "order_line", "payment", "pos_event", "product", "stock_item", "store_price"]  # fmt: skip


def test_default_config_dir_from_environment(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update(lookback="3h"))
    monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(cfg))
    assert load_config().flows["webshop_to_crm"].lookback == timedelta(hours=3)


# ---------------------------------------------------------------- documents


def test_invalid_yaml(cfg: Path) -> None:
    (cfg / "flows.yaml").write_text("flows:\n  webshop_to_crm: [unclosed\n")
    expect_error(cfg, "flows.yaml", "", "not valid YAML")


def test_missing_file(cfg: Path) -> None:
    (cfg / "mappings.yaml").unlink()
    expect_error(cfg, "mappings.yaml", "", "file not found")


@pytest.mark.parametrize(
    "text",
    ["systems: [webshop, erp]\n", "systems: just text\n", "systems:\n", "system:\n  webshop: {}\n", "- systems\n"],
)
def test_top_level_key_must_hold_a_mapping(cfg: Path, text: str) -> None:
    (cfg / "systems.yaml").write_text(text)
    expect_error(cfg, "systems.yaml", "systems", "expected a mapping under top-level key 'systems'")


def test_extra_key_in_a_flow(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update(colour="blue"))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.colour", "Extra inputs are not permitted")


def test_extra_key_deep_inside_an_entity(cfg: Path) -> None:
    edit(cfg, "entities.yaml", lambda d: d["entities"]["customer"]["fields"]["email"].update(unique=True))
    expect_error(cfg, "entities.yaml", "entities.customer.fields.email.unique", "Extra inputs are not permitted")


def test_credentials_do_not_belong_in_systems_yaml(cfg: Path) -> None:
    edit(cfg, "systems.yaml", lambda d: d["systems"]["crm"].update(password="hunter2"))
    expect_error(cfg, "systems.yaml", "systems.crm.password", "Extra inputs are not permitted")


def test_unknown_field_type(cfg: Path) -> None:
    edit(cfg, "entities.yaml", lambda d: d["entities"]["customer"]["fields"]["tier"].update(type="text"))
    expect_error(cfg, "entities.yaml", "entities.customer.fields.tier.type")


def test_missing_required_key(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].pop("target"))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.target", "Field required")


@pytest.mark.parametrize("setting", ["lookback", "freshness_sla", "retry_delay"])
@pytest.mark.parametrize("value", ["2 hours", "1.5h", "-2h", "soon"])
def test_bad_duration(cfg: Path, setting: str, value: str) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update({setting: value}))
    expect_error(cfg, "flows.yaml", f"flows.webshop_to_crm.{setting}", f"'{value}' is not a duration")


def test_duration_as_seconds_and_defaults(cfg: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["flows"]["webshop_to_crm"]["lookback"] = 5400
        del doc["flows"]["webshop_to_crm"]["freshness_sla"]

    edit(cfg, "flows.yaml", change)
    flow = load_config(cfg).flows["webshop_to_crm"]
    assert flow.lookback == timedelta(minutes=90)
    assert flow.freshness_sla == timedelta(hours=6)


def test_chunk_size_must_be_positive(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["erp_to_stockctl"].update(chunk_size=0))
    expect_error(cfg, "flows.yaml", "flows.erp_to_stockctl.chunk_size")


def test_invalid_name(cfg: Path) -> None:
    edit(cfg, "systems.yaml", lambda d: d["systems"].update({"pos-terminal": {"kind": "sql", "connection": "x"}}))
    expect_error(cfg, "systems.yaml", "systems.pos-terminal", "'pos-terminal' is not a valid name")


def test_invalid_table_name(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["erp"]["entities"]["stock_item"].update(table="items; drop"))
    expect_error(cfg, "mappings.yaml", "mappings.erp.entities.stock_item.table", "not a valid name")


# ---------------------------------------------------------------- entities


def test_entity_key_must_be_a_field(cfg: Path) -> None:
    edit(cfg, "entities.yaml", lambda d: d["entities"]["stock_item"].update(key="item_code"))
    expect_error(cfg, "entities.yaml", "entities.stock_item.key", "key 'item_code' is not a field")


def test_unknown_entity_in_depends_on(cfg: Path) -> None:
    edit(cfg, "entities.yaml", lambda d: d["entities"]["order"]["depends_on"].append("shipment"))
    expect_error(cfg, "entities.yaml", "entities.order.depends_on", "unknown entity 'shipment'")


def test_dependency_cycle(cfg: Path) -> None:
    edit(cfg, "entities.yaml", lambda d: d["entities"]["customer"].update(depends_on=["order"]))
    error = expect_error(cfg, "entities.yaml", "entities.customer.depends_on", "dependency cycle")
    assert "customer -> order -> customer" in error.problem


def test_longer_dependency_cycle(cfg: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["entities"]["customer"]["depends_on"] = ["stock_item"]
        doc["entities"]["stock_item"]["depends_on"] = ["order"]

    edit(cfg, "entities.yaml", change)
    error = expect_error(cfg, "entities.yaml", "entities.customer.depends_on", "dependency cycle")
    assert "customer -> stock_item -> order -> customer" in error.problem


def test_self_dependency_is_a_cycle(cfg: Path) -> None:
    edit(cfg, "entities.yaml", lambda d: d["entities"]["stock_item"].update(depends_on=["stock_item"]))
    error = expect_error(cfg, "entities.yaml", "entities.stock_item.depends_on", "dependency cycle")
    assert "stock_item -> stock_item" in error.problem


def test_reference_must_be_in_depends_on(cfg: Path) -> None:
    edit(cfg, "entities.yaml", lambda d: d["entities"]["order"].update(depends_on=[]))
    expect_error(
        cfg, "entities.yaml", "entities.order.references.customer_id", "'customer' must also be listed in depends_on"
    )


def test_reference_must_be_a_field(cfg: Path) -> None:
    edit(cfg, "entities.yaml", lambda d: d["entities"]["order"]["references"].update(buyer_id="customer"))
    expect_error(cfg, "entities.yaml", "entities.order.references.buyer_id", "not a field")


# ---------------------------------------------------------------- mappings


def test_mapping_must_map_the_key(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["webshop"]["entities"]["customer"]["fields"].pop("customer_id"))
    expect_error(
        cfg, "mappings.yaml", "mappings.webshop.entities.customer.fields", "must map key 'customer_id' to 'ext_id'"
    )


def test_mapping_key_column_must_match_the_key_field(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["crm"]["entities"]["customer"].update(key="id"))
    expect_error(cfg, "mappings.yaml", "mappings.crm.entities.customer.fields", "must map key 'customer_id' to 'id'")


def _composite(entity: str, fields: list[str], systems: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    """An edit keying ``entity`` by ``fields``: in entities.yaml, or in the mappings of ``systems``."""

    def change(doc: dict[str, Any]) -> None:
        if "entities" in doc:
            doc["entities"][entity]["key"] = fields
            return
        for system in systems:
            mapping = doc["mappings"][system]["entities"][entity]
            mapping["key"] = [mapping["fields"][field] for field in fields]

    return change


# A store's price keyed by store and SKU, not by the ``<store>:<sku>`` reference (the ERP and the POS back office).
_store_price_by_store_and_sku = _composite("store_price", ["store", "sku"], ("erp", "pos"))


def test_a_composite_key_is_a_list_of_fields_and_a_mapping_lists_their_columns(cfg: Path) -> None:
    edit(cfg, "entities.yaml", _store_price_by_store_and_sku)
    edit(cfg, "mappings.yaml", _store_price_by_store_and_sku)
    config = load_config(cfg)
    price = config.entities["store_price"]
    assert (price.key, price.key_fields, price.composite) == ("store+sku", ["store", "sku"], True)
    assert config.entities["customer"].key_fields == ["customer_id"] and not config.entities["customer"].composite
    mapping = config.entity_mapping("pos", "store_price")
    assert mapping.key_columns == ["store", "sku"]
    assert mapping.columns[:3] == ["store", "sku", "item_ref"], "each key column once, first"
    assert "store" not in config.mapped_fields("erp_to_pos", "store_price"), "a key field is not compared"
    assert set(mapping.narrowed([]).fields) == {"store", "sku"}, "a narrowed read keeps the key"


def test_a_composite_key_field_the_mapping_lacks_is_named(cfg: Path) -> None:
    edit(cfg, "entities.yaml", _store_price_by_store_and_sku)
    edit(cfg, "mappings.yaml", _store_price_by_store_and_sku)
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["pos"]["entities"]["store_price"]["fields"].pop("sku"))
    expect_error(cfg, "mappings.yaml", "mappings.pos.entities.store_price.fields", "must map key 'sku' to 'sku'")


def test_a_mapping_lists_one_key_column_per_key_field(cfg: Path) -> None:
    edit(cfg, "entities.yaml", _store_price_by_store_and_sku)
    problem = "the entity's key has 2 field(s) (store, sku); list one column for each"
    expect_error(cfg, "mappings.yaml", "mappings.erp.entities.store_price.key", problem)


def test_a_composite_key_names_fields_and_each_once(cfg: Path) -> None:
    edit(cfg, "entities.yaml", lambda d: d["entities"]["store_price"].update(key=["store", "aisle"]))
    expect_error(cfg, "entities.yaml", "entities.store_price.key", "key 'aisle' is not a field")
    edit(cfg, "entities.yaml", lambda d: d["entities"]["store_price"].update(key=["store", "store"]))
    expect_error(cfg, "entities.yaml", "entities.store_price.key", "names a field twice")
    edit(cfg, "entities.yaml", lambda d: d["entities"]["store_price"].update(key=["store", "s-k-u"]))
    expect_error(cfg, "entities.yaml", "entities.store_price.key", "'s-k-u' is not a valid name")


def test_a_rest_system_takes_single_field_keys_only(cfg: Path) -> None:
    by_payment_and_invoice = _composite("payment", ["payment_id", "invoice_id"], ("crm_api", "payments"))
    edit(cfg, "entities.yaml", by_payment_and_invoice)
    edit(cfg, "mappings.yaml", by_payment_and_invoice)
    where = "mappings.crm_api.entities.payment.key"
    expect_error(cfg, "mappings.yaml", where, "systems of kind 'rest' take single-field keys only")


def test_a_reference_names_a_parent_with_a_single_field_key(cfg: Path) -> None:
    edit(cfg, "entities.yaml", _composite("customer", ["customer_id", "email"], ()))
    problem = "'customer' has a composite key; a reference is one field holding a parent's key"
    expect_error(cfg, "entities.yaml", "entities.order.references.customer_id", problem)


def test_mapping_of_an_unknown_field(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["erp"]["entities"]["stock_item"]["fields"].update(colour="c"))
    expect_error(cfg, "mappings.yaml", "mappings.erp.entities.stock_item.fields.colour", "not a field of 'stock_item'")


def test_codes_for_an_unknown_field(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["crm"]["entities"]["order"]["codes"].update(stage={"a": "b"}))
    expect_error(cfg, "mappings.yaml", "mappings.crm.entities.order.fields.stage", "not a field of 'order'")


def test_mapping_of_an_unknown_entity(cfg: Path) -> None:
    edit(
        cfg,
        "mappings.yaml",
        lambda d: d["mappings"]["crm"]["entities"].update(
            shipment={"table": "shipments", "key": "no", "fields": {"shipment_id": "no"}}
        ),
    )
    expect_error(cfg, "mappings.yaml", "mappings.crm.entities.shipment", "unknown entity")


def test_mapping_for_an_unknown_system(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"].update(kiosk={"version": 1, "entities": {}}))
    expect_error(cfg, "mappings.yaml", "mappings.kiosk", "unknown system")


# ---------------------------------------------------------------- flows


@pytest.mark.parametrize("role", ["source", "target"])
def test_unknown_system_in_a_flow(cfg: Path, role: str) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update({role: "shopify"}))
    expect_error(cfg, "flows.yaml", f"flows.webshop_to_crm.{role}", "unknown system 'shopify'")


def test_flow_source_and_target_differ(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update(target="webshop"))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.target", "same system")


def test_unknown_entity_in_a_flow(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"]["entities"].append("shipment"))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.entities", "unknown entity 'shipment'")


@pytest.mark.parametrize(
    "asset",
    [
        "crm.customer",  # the flow's own write: it would start itself
        "stockctl.order",  # no flow writes orders into stock control
        "stockctl",  # not <system>.<entity>
    ],
)
def test_a_flow_is_triggered_only_by_what_another_flow_writes(cfg: Path, asset: str) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update(triggered_by=["stockctl.product", asset]))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.triggered_by[1]", f"no other flow writes '{asset}'")


def test_a_flow_triggered_by_another_flows_writes(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update(triggered_by=["stockctl.product"]))
    assert load_config(cfg).flows["webshop_to_crm"].triggered_by == ["stockctl.product"]


def test_flow_needs_at_least_one_entity(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update(entities=[]))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.entities")


def test_flow_entity_needs_a_mapping_on_both_sides(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["crm"]["entities"].pop("order"))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.entities", "system 'crm' has no mapping for 'order'")


def test_source_mapping_needs_a_cursor(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["webshop"]["entities"]["customer"].pop("cursor"))
    expect_error(
        cfg, "flows.yaml", "flows.webshop_to_crm.entities", "source mapping of 'customer' needs a cursor column"
    )


@pytest.mark.parametrize("field", ["segment", "*"])
def test_ownership_by_an_unknown_system(cfg: Path, field: str) -> None:
    edit(
        cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"]["ownership"]["customer"].update({field: "marketing"})
    )
    expect_error(
        cfg,
        "flows.yaml",
        f"flows.webshop_to_crm.ownership.customer.{field}",
        "owner 'marketing' is neither a system nor 'shared'",
    )


def test_ownership_of_an_unknown_field(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"]["ownership"]["customer"].update(shoe_size="crm"))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.ownership.customer.shoe_size", "not a field of 'customer'")


def test_ownership_of_an_entity_outside_the_flow(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"]["ownership"].update(stock_item={"*": "erp"}))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.ownership.stock_item", "entity not in flow")


# ---------------------------------------------------------------- ownership lookups


def test_shipped_synced_and_shared_fields() -> None:
    config = load_config(SHIPPED)
    # segment is owned by the CRM (and not mapped by the web shop): not synced by this flow
    assert config.synced_fields("webshop_to_crm", "customer") == [
        "email",
        "name",
        "phone",
        "address",
        "birth_date",
        "tier",
    ]
    assert config.shared_fields("webshop_to_crm", "customer") == ["email", "address"]
    assert config.synced_fields("crm_to_webshop", "contact") == ["email", "address"]
    assert config.synced_fields("erp_to_stockctl", "stock_item") == ["name", "price", "currency"]
    assert config.owner("webshop_to_crm", "customer", "segment") == "crm"
    assert config.owner("webshop_to_crm", "customer", "phone") == "webshop"
    assert config.owner("erp_to_stockctl", "stock_item", "quantity") == "stockctl"


def test_writers_into_a_system_are_the_flows_landing_on_the_same_rows_and_shared_fields() -> None:
    """Whose ledger entries tell a value truesync wrote from one a person typed (docs/design.md, "Echoes")."""
    config = load_config(SHIPPED)
    assert config.writers_into("crm", "crm_to_accounting", "contact") == [("webshop_to_crm", "customer")]
    assert config.writers_into("accounting", "crm_to_accounting", "contact") == [
        ("crm_to_accounting", "contact"),
        ("webshop_to_accounting", "customer"),
    ]
    assert config.writers_into("webshop", "webshop_to_crm", "customer") == [("crm_to_webshop", "contact")]
    # the same CRM rows, other shared fields: the compliance notes are not the addresses
    assert config.writers_into("crm", "compliance_to_crm", "compliance_status") == [
        ("compliance_to_crm", "compliance_status")
    ]
    assert config.writers_into("stockctl", "erp_to_stockctl", "stock_item") == [], "no shared fields"


def test_star_sets_the_default_owner(cfg: Path) -> None:
    edit(
        cfg,
        "flows.yaml",
        lambda d: d["flows"]["webshop_to_crm"]["ownership"].update(
            customer={"*": "shared", "email": "webshop", "phone": "crm"}
        ),
    )
    config = load_config(cfg)
    assert config.owner("webshop_to_crm", "customer", "name") == "shared"
    assert config.owner("webshop_to_crm", "customer", "email") == "webshop"
    assert config.owner("webshop_to_crm", "customer", "phone") == "crm"
    assert config.synced_fields("webshop_to_crm", "customer") == ["email", "name", "address", "birth_date", "tier"]
    assert config.shared_fields("webshop_to_crm", "customer") == ["name", "address", "birth_date", "tier"]


def test_star_owned_by_the_target_syncs_only_explicit_fields(cfg: Path) -> None:
    edit(
        cfg,
        "flows.yaml",
        lambda d: d["flows"]["webshop_to_crm"]["ownership"].update(
            customer={"*": "crm", "email": "webshop", "tier": "shared"}
        ),
    )
    config = load_config(cfg)
    assert config.synced_fields("webshop_to_crm", "customer") == ["email", "tier"]
    assert config.shared_fields("webshop_to_crm", "customer") == ["tier"]


def test_without_rules_the_flow_source_owns_everything(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"]["ownership"].pop("order"))
    config = load_config(cfg)
    assert config.owner("webshop_to_crm", "order", "status") == "webshop"
    assert config.synced_fields("webshop_to_crm", "order") == [
        "customer_id",
        "status",
        "total",
        "currency",
        "ordered_at",
    ]
    # the key is never a synced field
    assert "order_id" not in config.synced_fields("webshop_to_crm", "order")


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        (" 2 h ", timedelta(hours=2)),
        ("0s", timedelta(0)),
        (7200, timedelta(hours=2)),
        (1.5, timedelta(seconds=1.5)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_parse_duration(value: Any, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["2 hours", "1.5h", "-2h", "2", "h", "", "2y", True, None])
def test_parse_duration_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [-7200, timedelta(hours=-1)])
def test_parse_duration_rejects_negative(value: Any) -> None:
    with pytest.raises(ValueError, match="negative duration"):
        parse_duration(value)


# ---------------------------------------------------------------- the command line


def test_cli_config_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--dir", str(SHIPPED)]) == 0
    out = capsys.readouterr()
    assert "configuration OK" in out.out
    assert "customer -> order -> stock_item" in out.out
    assert out.err == ""


def test_cli_pools_lists_one_pool_per_target_sized_by_max_parallel_tasks(
    cfg: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pools as ``airflow pools import`` reads them: targets only, the sources need none."""
    edit(cfg, "systems.yaml", lambda d: d["systems"]["crm"].update(max_parallel_tasks=3))
    monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(cfg))
    assert main(["pools"]) == 0
    pools = json.loads(capsys.readouterr().out)
    assert {name: pool["slots"] for name, pool in pools.items()} == {
        "truesync_crm": 3,
        "truesync_webshop": 8,
        "truesync_accounting": 8,
        "truesync_crm_api": 8,
        "truesync_stockctl": 8,
        "truesync_pos": 8,
    }
    assert pools["truesync_crm"] == {
        "slots": 3,
        "description": "truesync tasks working on crm; a compare task takes every slot",
        "include_deferred": False,
    }


def test_max_parallel_tasks_is_at_least_one(cfg: Path) -> None:
    edit(cfg, "systems.yaml", lambda d: d["systems"]["stockctl"].update(max_parallel_tasks=0))
    expect_error(cfg, "systems.yaml", "systems.stockctl.max_parallel_tasks", "greater than or equal to 1")


def test_cli_config_check_shows_each_flows_entities_in_load_order(
    cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parents first (``depends_on``), whatever order the flow lists its entities in."""
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update(entities=["order", "customer"]))
    assert main(["config", "check", "--dir", str(cfg)]) == 0
    lines = capsys.readouterr().out.splitlines()
    flows = {
        line.split()[1].rstrip(":"): lines[i + 1].strip() for i, line in enumerate(lines) if line.startswith("  flow ")
    }
    assert flows == {
        "webshop_to_crm": "load order: customer -> order",
        "crm_to_webshop": "load order: contact",
        "crm_to_accounting": "load order: contact",
        "webshop_to_accounting": "load order: customer -> order -> order_line",
        "compliance_to_crm": "load order: compliance_status -> asset_inspection",
        "erp_to_stockctl": "load order: stock_item",
        "webshop_to_stockctl": "load order: product",
        "webshop_to_crm_api": "load order: customer -> order",
        "payments_to_crm_api": "load order: payment",
        "pos_events_to_crm": "load order: pos_event",
        "erp_to_pos": "load order: store_price",
    }
    assert "  flow webshop_to_crm: webshop -> crm" in lines
    accounting = lines.index("  flow webshop_to_accounting: webshop -> accounting")
    assert lines[accounting + 2] == "    also runs when another flow writes: stockctl.product (Airflow Assets)"


def test_cli_config_check_bad(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update(lookback="2 hours"))
    assert main(["config", "check", "--dir", str(cfg)]) == 1
    out = capsys.readouterr()
    assert "configuration OK" not in out.out
    assert "configuration error" in out.err
    assert "flows.yaml" in out.err
    assert "flows.webshop_to_crm.lookback" in out.err
    assert "'2 hours' is not a duration" in out.err


def test_cli_config_check_notes_connections_missing_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_WEBSHOP", "sqlite:////tmp/shop.db")
    monkeypatch.delenv("AIRFLOW_CONN_TRUESYNC_ERP", raising=False)
    assert main(["config", "check", "--dir", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "system 'erp' needs Airflow connection 'truesync_erp'" in out
    assert "system 'webshop' needs" not in out


def test_a_missing_configuration_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration directory not found") as err:
        load_config(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


# ---------------------------------------------------------------- data-quality settings


def test_quality_thresholds_name_an_unknown_class_and_a_share_out_of_range(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update(quality={"max_class_share": {"odd": 0.1}}))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.quality.max_class_share", "'odd' is not one of")
    edit(cfg, "flows.yaml", lambda d: d["flows"]["webshop_to_crm"].update(quality={"max_blocked_share": 1.5}))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.quality.max_blocked_share", "less than or equal to 1")


def test_field_formats_and_severities_are_checked(cfg: Path) -> None:
    edit(cfg, "entities.yaml", lambda d: d["entities"]["customer"]["fields"]["email"].update(format="mail"))
    expect_error(cfg, "entities.yaml", "entities.customer.fields.email.format", "'email'")
    edit(
        cfg,
        "entities.yaml",
        lambda d: d["entities"]["customer"]["fields"]["email"].update(format="email", severity="x"),
    )
    expect_error(cfg, "entities.yaml", "entities.customer.fields.email.severity", "'block' or 'warn'")


def test_shipped_quality_settings() -> None:
    config = load_config(SHIPPED)
    fields = config.entities["customer"].fields
    assert fields["email"].pii and fields["email"].format == "email"
    assert (fields["phone"].format, fields["phone"].severity) == ("phone", "warn")
    assert config.entities["stock_item"].fields["price"].min == 0
    assert config.flows["webshop_to_crm"].quality.mask_pii is True


# ---------------------------------------------------------------- REST systems and reconciliation


def test_rest_system_needs_its_rest_block_and_a_sql_system_may_not_have_one(cfg: Path) -> None:
    edit(cfg, "systems.yaml", lambda d: d["systems"]["crm_api"].pop("rest"))
    expect_error(cfg, "systems.yaml", "systems.crm_api", "needs a 'rest' block")


def test_an_unknown_kind_is_refused_naming_the_known_kinds(cfg: Path) -> None:
    edit(cfg, "systems.yaml", lambda d: d["systems"]["crm"].update(kind="soap"))
    expect_error(cfg, "systems.yaml", "systems.crm.kind", "unknown kind 'soap'", "sql, rest")


def test_a_block_on_a_kind_that_takes_none_is_refused(cfg: Path) -> None:
    edit(cfg, "systems.yaml", lambda d: d["systems"]["crm"].update(sql={"pool": 5}))
    expect_error(cfg, "systems.yaml", "systems.crm.sql", "Extra inputs are not permitted")


def test_a_rest_block_on_a_sql_system_is_refused(cfg: Path) -> None:
    edit(cfg, "systems.yaml", lambda d: d["systems"]["crm"].update(rest=d["systems"]["crm_api"]["rest"]))
    expect_error(cfg, "systems.yaml", "systems.crm.rest", "Extra inputs are not permitted")


def test_settings_are_not_a_key_of_systems_yaml(cfg: Path) -> None:
    edit(cfg, "systems.yaml", lambda d: d["systems"]["crm_api"].update(settings=d["systems"]["crm_api"]["rest"]))
    expect_error(cfg, "systems.yaml", "systems.crm_api.settings", "written under the kind's name")


def test_every_kind_names_a_section_of_the_configuration_docs() -> None:
    docs = (SHIPPED.parents[1] / "docs" / "configuration.md").read_text()
    headings = re.findall(r"^#+ (.+)$", docs, flags=re.MULTILINE)
    anchors = {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}
    assert {kind.docs for kind in KINDS.values()} <= anchors


def test_rest_mapping_table_must_be_an_endpoint(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["crm_api"]["entities"]["customer"].update(table="people"))
    expect_error(cfg, "mappings.yaml", "mappings.crm_api.entities.customer.table", "'people' is not an endpoint")


def test_rest_pagination_style_and_secret_headers_are_checked(cfg: Path) -> None:
    def style(doc: dict[str, Any]) -> None:
        doc["systems"]["crm_api"]["rest"]["endpoints"]["contacts"]["pagination"]["style"] = "scroll"

    edit(cfg, "systems.yaml", style)
    expect_error(cfg, "systems.yaml", "systems.crm_api.rest.endpoints.contacts.pagination.style", "'page'")


def test_credentials_in_rest_headers_are_refused(cfg: Path) -> None:
    edit(cfg, "systems.yaml", lambda d: d["systems"]["crm_api"]["rest"].update(headers={"Authorization": "x"}))
    expect_error(cfg, "systems.yaml", "systems.crm_api.rest", "carries credentials")


def test_upsert_path_must_name_the_key(cfg: Path) -> None:
    def path(doc: dict[str, Any]) -> None:
        doc["systems"]["crm_api"]["rest"]["endpoints"]["deals"]["upsert"]["path"] = "/deals/upsert"

    edit(cfg, "systems.yaml", path)
    expect_error(cfg, "systems.yaml", "systems.crm_api.rest.endpoints.deals.upsert.path", "'{key}'")


def test_shipped_rest_settings() -> None:
    config = load_config(SHIPPED)
    rest = config.systems["crm_api"].settings
    assert isinstance(rest, RestConfig) and rest.auth.type == "bearer"
    assert rest.endpoints["deals"].upsert is not None and rest.endpoints["deals"].upsert.method == "PUT"
    assert config.flows["payments_to_crm_api"].reconcile["payment"].match_on == "invoice_id"


def test_reconcile_match_on_must_be_a_reference(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["payments_to_crm_api"]["reconcile"]["payment"].update(match_on="kind"))
    expect_error(cfg, "flows.yaml", "flows.payments_to_crm_api.reconcile.payment.match_on", "one of the references")


def test_reconcile_references_must_be_fields_the_target_maps(cfg: Path) -> None:
    def refs(doc: dict[str, Any]) -> None:
        doc["flows"]["payments_to_crm_api"]["reconcile"]["payment"]["references"]["customer_id"] = "ordered_at"

    edit(cfg, "flows.yaml", refs)
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["crm_api"]["entities"]["order"]["fields"].pop("ordered_at"))
    expect_error(
        cfg, "flows.yaml", "flows.payments_to_crm_api.reconcile.payment.references.customer_id", "does not map"
    )


def test_reconcile_balance_must_be_a_field_of_the_settled_entity(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["payments_to_crm_api"]["reconcile"]["payment"].update(balance="owed"))
    expect_error(cfg, "flows.yaml", "flows.payments_to_crm_api.reconcile.payment.balance", "not a field of 'order'")


def test_a_user_expectation_on_a_field_the_source_does_not_map_is_refused(cfg: Path) -> None:
    def expect_on_segment(doc: dict[str, Any]) -> None:
        check = {"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "segment"}}
        doc["entities"]["customer"]["expectations"].append(check)

    edit(cfg, "entities.yaml", expect_on_segment)
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.entities", "reads segment", "'webshop' does not map")


def test_user_expectations_may_read_the_change_time(cfg: Path) -> None:
    def on_change_time(doc: dict[str, Any]) -> None:
        check = {"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "change_time"}}
        doc["entities"]["customer"]["expectations"].append(check)

    edit(cfg, "entities.yaml", on_change_time)
    assert load_config(cfg).entities["customer"].expectations[-1].kwargs == {"column": "change_time"}


def test_rest_endpoint_needs_a_window_end(cfg: Path) -> None:
    edit(
        cfg, "systems.yaml", lambda d: d["systems"]["crm_api"]["rest"]["endpoints"]["contacts"].update(until_param=None)
    )
    expect_error(cfg, "systems.yaml", "systems.crm_api.rest.endpoints.contacts.until_param", "until_param is required")


def test_the_api_key_header_is_refused_in_rest_headers(cfg: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["systems"]["crm_api"]["rest"].update(
            auth={"type": "api_key", "header": "X-Crm-Key"}, headers={"x-crm-key": "k"}
        )

    edit(cfg, "systems.yaml", change)
    expect_error(cfg, "systems.yaml", "systems.crm_api.rest", "header 'x-crm-key' carries credentials")


def test_reconcile_needs_a_rest_lookup_by_match_on(cfg: Path) -> None:
    edit(cfg, "systems.yaml", lambda d: d["systems"]["crm_api"]["rest"]["endpoints"]["deals"]["lookup"].update(by={}))
    expect_error(
        cfg, "flows.yaml", "flows.payments_to_crm_api.reconcile.payment.match_on", "no lookup.by 'invoice_ref'"
    )


def test_reconcile_balance_must_be_mapped_by_the_target(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["crm_api"]["entities"]["order"]["fields"].pop("balance"))
    expect_error(cfg, "flows.yaml", "flows.payments_to_crm_api.reconcile.payment.balance", "does not map 'balance'")


def test_reconcile_balance_needs_total_and_amount(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"]["payments_to_crm_api"]["reconcile"]["payment"].pop("total"))
    expect_error(cfg, "flows.yaml", "flows.payments_to_crm_api.reconcile.payment.balance", "needs 'total' and 'amount'")


def _finance(cfg: Path, **changes: Any) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"][PAY]["reconcile"]["payment"]["finance"].update(changes))


PAY = "payments_to_crm_api"
FINANCE_AT = f"flows.{PAY}.reconcile.payment.finance"


def test_the_shipped_payment_rule_checks_accountings_books_which_own_the_balance() -> None:
    finance = load_config(SHIPPED).flows[PAY].reconcile["payment"].finance
    assert finance is not None and (finance.system, finance.entity, finance.owns_balance) == (
        "accounting", "invoice", True
    )  # fmt: skip


def test_the_books_must_be_a_known_system(cfg: Path) -> None:
    _finance(cfg, system="ledgerly")
    expect_error(cfg, "flows.yaml", f"{FINANCE_AT}.system", "unknown system 'ledgerly'")


def test_the_books_must_map_their_ledger_and_the_settled_entity(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["accounting"]["entities"].pop("payment"))
    expect_error(cfg, "flows.yaml", f"{FINANCE_AT}.system", "'accounting' does not map 'payment'")


def test_the_books_references_must_name_match_on_and_be_mapped(cfg: Path) -> None:
    _finance(cfg, references={"order_id": "order_id"})
    expect_error(cfg, "flows.yaml", f"{FINANCE_AT}.references", "must name match_on 'invoice_id'")
    _finance(cfg, references={"invoice_id": "invoice_id", "currency": "currency"})
    expect_error(cfg, "flows.yaml", f"{FINANCE_AT}.references.currency", "'accounting' does not map 'currency'")


def test_the_books_balance_must_be_mapped(cfg: Path) -> None:
    _finance(cfg, balance="owed")
    expect_error(cfg, "flows.yaml", f"{FINANCE_AT}.balance", "'accounting' does not map 'owed'")


def test_the_books_are_checked_with_the_targets_balance(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda d: d["flows"][PAY]["reconcile"]["payment"].pop("balance"))
    expect_error(cfg, "flows.yaml", FINANCE_AT, "set 'balance' on the rule")


# ---------------------------------------------------------------- the full compare


def test_compare_defaults_to_a_weekly_report_only_compare_under_a_one_percent_guard() -> None:
    compare = load_config(SHIPPED).flows["webshop_to_crm_api"].compare
    assert (compare.schedule, compare.max_delete_share) == ("0 3 * * 0", 0.01)
    assert compare.deletes_of("customer").policy == "report" and compare.deletes_of("customer").mark is None


def test_a_delete_policy_alone_or_as_a_block(cfg: Path) -> None:
    def policies(doc: dict[str, Any]) -> None:
        doc["flows"]["webshop_to_crm"]["compare"] = {
            "deletes": {"order": "delete", "customer": {"policy": "soft", "column": "deleted_at"}},
            "max_delete_share": 0.05,
        }

    edit(cfg, "flows.yaml", policies)
    compare = load_config(cfg).flows["webshop_to_crm"].compare
    assert compare.deletes_of("order").policy == "delete" and compare.deletes_of("order").mark is None
    assert compare.deletes_of("customer").mark == ("deleted_at", None)
    assert compare.max_delete_share == 0.05


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ({"policy": "soft"}, "a soft delete needs the target 'column'"),
        ({"policy": "delete", "column": "deleted_at"}, "'column' and 'value' belong to policy 'soft'"),
        ("purge", "Input should be 'report', 'soft' or 'delete'"),  # reported at .policy, the key it stands for
        ({"policy": "soft", "column": "deleted at"}, "not a valid name"),
    ],
)
def test_a_delete_policy_that_cannot_work_is_refused(cfg: Path, policy: Any, problem: str) -> None:
    edit(cfg, "flows.yaml", lambda doc: doc["flows"]["webshop_to_crm"].update(compare={"deletes": {"order": policy}}))
    where = "flows.webshop_to_crm.compare.deletes.order" + (".policy" if isinstance(policy, str) else "")
    expect_error(cfg, "flows.yaml", where, problem)


def test_a_delete_policy_for_an_entity_outside_the_flow(cfg: Path) -> None:
    edit(
        cfg,
        "flows.yaml",
        lambda doc: doc["flows"]["webshop_to_crm"].update(compare={"deletes": {"stock_item": "delete"}}),
    )
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.compare.deletes.stock_item", "entity not in flow")


def test_a_target_that_cannot_delete_takes_report_only(cfg: Path) -> None:
    edit(
        cfg, "flows.yaml", lambda doc: doc["flows"]["webshop_to_crm_api"].update(compare={"deletes": {"order": "soft"}})
    )
    with pytest.raises(ConfigError):
        load_config(cfg)
    edit(
        cfg,
        "flows.yaml",
        lambda doc: doc["flows"]["webshop_to_crm_api"].update(compare={"deletes": {"order": "delete"}}),
    )
    expect_error(
        cfg,
        "flows.yaml",
        "flows.webshop_to_crm_api.compare.deletes.order",
        "target 'crm_api' (kind rest) cannot delete",
    )


def test_max_delete_share_is_a_share(cfg: Path) -> None:
    edit(cfg, "flows.yaml", lambda doc: doc["flows"]["webshop_to_crm"].update(compare={"max_delete_share": 1.5}))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm.compare.max_delete_share", "less than or equal to 1")


def test_member_paths_are_refused_for_flat_systems(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["crm"]["entities"]["customer"]["fields"].update(email="a.b"))
    expect_error(cfg, "mappings.yaml", "mappings.crm.entities.customer", "'a.b' is a member path", "kind 'sql'")


def test_a_malformed_member_path_is_refused(cfg: Path) -> None:
    edit(
        cfg, "mappings.yaml", lambda d: d["mappings"]["crm_api"]["entities"]["customer"]["fields"].update(email="a..b")
    )
    expect_error(cfg, "mappings.yaml", "mappings.crm_api.entities.customer.fields", "not a valid name or member path")


def test_a_target_is_written_by_plain_member_names(cfg: Path) -> None:
    edit(cfg, "mappings.yaml", lambda d: d["mappings"]["crm_api"]["entities"]["customer"]["fields"].update(email="e.v"))
    expect_error(cfg, "flows.yaml", "flows.webshop_to_crm_api.entities", "member path 'e.v'", "read, not written")


def test_minor_units_name_a_mapped_decimal_and_its_currency(cfg: Path) -> None:
    def amount_in(field: str, currency: str) -> Callable[[dict[str, Any]], None]:
        def change(d: dict[str, Any]) -> None:
            d["mappings"]["payments"]["entities"]["payment"]["minor_units"] = {field: {"currency": currency}}

        return change

    edit(cfg, "mappings.yaml", amount_in("state", "currency"))
    expect_error(cfg, "mappings.yaml", "mappings.payments.entities.payment.minor_units.state", "decimal field")
    edit(cfg, "mappings.yaml", amount_in("amount", "customer"))
    where = "mappings.payments.entities.payment.minor_units.amount.currency"
    expect_error(cfg, "mappings.yaml", where, "'customer' is not a field this mapping maps")


def test_a_listing_paged_by_the_last_id_may_leave_out_window_bounds(cfg: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["systems"]["payments"]["rest"]["endpoints"]["transactions"].update(
            pagination={"style": "after_id"}, order="desc", since_param=None, until_param=None
        )

    edit(cfg, "systems.yaml", change)
    endpoint = load_config(cfg).systems["payments"].settings.endpoints["transactions"]
    assert (endpoint.order, endpoint.since_param, endpoint.until_param) == ("desc", None, None)


def test_a_lookup_has_one_way_to_find_a_record(cfg: Path) -> None:
    lookup = {"param": "txn_id", "path": "/transactions/{key}"}
    edit(
        cfg,
        "systems.yaml",
        lambda d: d["systems"]["payments"]["rest"]["endpoints"]["transactions"].update(lookup=lookup),
    )
    expect_error(
        cfg, "systems.yaml", "systems.payments.rest.endpoints.transactions.lookup", "exactly one of param and path"
    )


def test_the_stripe_example_loads_beside_the_sandbox(tmp_path: Path) -> None:
    """docs/examples/stripe is the worked example of docs/configuration.md: it must stay valid as shipped."""
    from stripe_server import stripe_config

    with pytest.MonkeyPatch.context() as patch:
        config = stripe_config(tmp_path / "config", "http://127.0.0.1:1", "http://127.0.0.1:2", patch, dialect=False)
    assert config.load_order(config.flows["stripe_to_crm_api"].entities) == ["charge", "refund"]
    events = config.systems["payments_stripe"].settings.endpoints["charge_events"]
    assert (events.record_path, events.order, events.time_format) == ("data.object", "desc", "epoch_s")


def test_a_field_is_read_as_stored_unless_codes_a_code_table_or_minor_units_translate_it() -> None:
    mapping = EntityMapping(
        table="orders",
        key="id",
        fields={"order_id": "id", "status": "st", "total": "cents", "country": "cc", "note": "note"},
        codes={"status": {"O": "open"}},
        minor_units={"total": MinorUnits(currency="currency")},
        code_tables={"country": "countries"},
    )
    assert mapping.as_stored(["order_id", "note"])
    for translated in ("status", "total", "country"):
        assert not mapping.as_stored(["note", translated]), translated
