"""Products the shop's orders name, into stock control under the shop's name (``webshop_to_stockctl``).

``sandbox.products`` lists the shop's products and the view ``ordered_products`` (only the
products an order line names); stock control holds the ERP's items and, per product, the
shop's name with a change time of its own. Stock control runs on SQLite, PostgreSQL or
MariaDB; the shop stays on SQLite, as in every sandbox (its bad rows would not fit a strict
column). ``labels.csv`` is the ground truth of the first runs over the demo days;
``erp_to_stockctl`` writes the same rows, and runs beside it in both orders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_demo import ERP_FLOW, Demo, assert_conserved, open_demo
from shared_setup import put_on_server

from truesync.sandbox import DEMO_DAYS
from truesync.sandbox.groundtruth import differences, drift, first_results, held_keys
from truesync.sandbox.products import FLOW

ERP_FIELDS = ("title", "price", "currency", "qty", "last_change")  # the ERP's and stock control's own


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def shop(request: pytest.FixtureRequest, state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """The sandbox at scale 200, stock control on the parameter's database, after the demo days of
    ``webshop_to_stockctl`` alone."""
    put_on_server(request, monkeypatch, "stockctl")
    handle = open_demo(state)
    handle.before = handle.by_key("stockctl", "stock_items", "sku")  # type: ignore[attr-defined]
    handle.reports = [handle.run(FLOW, day) for day in range(DEMO_DAYS)]  # type: ignore[attr-defined]
    yield handle
    handle.close()


def _labels(demo: Demo, flow: str) -> Any:
    labels = demo.labels()
    return labels[labels["flow"] == flow]


def test_the_products_orders_name_reach_stock_control_as_labelled_and_nothing_else_moves(shop: Demo) -> None:
    labels = _labels(shop, FLOW)
    assert set(labels["class"]) == {"in_sync", "missing", "delayed", "overwritten", "invalid"}
    wrong = differences(labels, first_results(shop.store, FLOW))
    assert wrong.empty, f"differs from the ground truth:\n{wrong.to_string()}"
    for report in shop.reports:  # type: ignore[attr-defined]
        assert_conserved(shop, report)
    assert drift(shop.config, FLOW, "product") <= held_keys(shop.store, FLOW, "product")

    before, after = shop.before, shop.by_key("stockctl", "stock_items", "sku")  # type: ignore[attr-defined]
    created = set(labels.loc[labels["class"] == "missing", "key"])
    assert set(after) - set(before) == created, "only the new products the orders name are created"
    for sku in created:
        assert [after[sku][f] for f in ERP_FIELDS] == [None] * len(ERP_FIELDS), "the ERP's fields wait for the ERP"
    for sku, row in before.items():
        assert [after[sku][f] for f in ERP_FIELDS] == [row[f] for f in ERP_FIELDS], f"{sku}: the ERP's fields kept"

    names = {r["sku"]: r["name"] for r in shop.rows("webshop", "products")}
    ordered = {r["sku"] for r in shop.rows("webshop", "order_lines")}
    unordered = [sku for sku in before if sku not in ordered and names[sku] != before[sku]["shop_name"]]
    assert unordered, "some product no order names was renamed in the shop"
    for sku in unordered:
        assert after[sku]["shop_name"] == before[sku]["shop_name"], f"{sku}: no order names it, no run carries it"
    assert not {s for s in names if s.startswith("WEB-") and s not in ordered} & set(after)

    invalid = labels[labels["class"] == "invalid"]
    for sku in invalid["key"]:
        exception = shop.exception(FLOW, "product", sku)
        assert (exception["field"], exception["check_name"]) == ("name", "expect_column_values_to_not_be_null")


def test_a_rerun_writes_nothing(shop: Demo) -> None:
    before = shop.snapshot("stockctl")
    for day in range(DEMO_DAYS):
        report = shop.run(FLOW, day, tag="again")
        assert (report["totals"]["created"], report["totals"]["updated"]) == (0, 0), report["totals"]
    assert shop.snapshot("stockctl") == before


@pytest.mark.parametrize("first", [FLOW, ERP_FLOW])
def test_the_erp_and_the_shop_write_one_table_in_either_order_each_as_labelled(state: Path, first: str) -> None:
    """Each flow dates stock control's row by its own change-time column, so neither flow's write
    looks like a stock-control edit to the other, whichever runs first each day."""
    demo = open_demo(state)
    try:
        flows = (first, ERP_FLOW if first == FLOW else FLOW)
        for day in range(DEMO_DAYS):
            for flow in flows:
                assert demo.run(flow, day)["status"] == "success"
        for flow in flows:
            wrong = differences(_labels(demo, flow), first_results(demo.store, flow))
            assert wrong.empty, f"{flow} differs from the ground truth:\n{wrong.to_string()}"
        for day in range(DEMO_DAYS):
            for flow in flows:
                totals = demo.run(flow, day, tag="again")["totals"]
                assert (totals["created"], totals["updated"]) == (0, 0), (flow, totals)
    finally:
        demo.close()
