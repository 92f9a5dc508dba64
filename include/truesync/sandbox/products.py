"""The web shop's products, and stock control's copy of those orders reference (flow ``webshop_to_stockctl``).

The shop lists the products it sells in ``products``, under its own name for each: the ERP's
items that stock control holds, and a few the shop sells before the ERP knows them
(``WEB-…``). Some go on sale on the first demo day (``catalogue``). Stock control learns of a
product once an order references it. The shop's view ``ordered_products`` holds only the
products some order line names, and dates each from the later of its own change and the
first line naming it: a product first ordered today is today's change, though nobody
edited it.

Stock control keeps the shop's name (``shop_name``) beside the ERP's title and price and its
own count, with a change time of its own (``shop_changed_at``): each flow into
``stock_items`` has its own change-time column, so one flow's writes never look like a
target edit to the other (``docs/design.md``, "Two flows into one table").

Before the demo days stock control holds the shop's name of each ERP item it holds, and
the ``WEB-…`` products ordered by then. Products on the demo days: first ordered, as stock
control has it (``in_sync``); renamed in the shop (``delayed``); renamed in stock control
after the shop (``overwritten``); a new ``WEB-…`` product first ordered (``missing``: created, with the
ERP's fields and the count left empty); listed without a name (``invalid``). A product no
order references is renamed too, and no run may carry it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Column, DateTime, Index, MetaData, Select, String, Table, case, func, select

from truesync.sandbox.made import NOT_NULL, Rows

FLOW = "webshop_to_stockctl"
# payments + 1, quiet drift + 2, POS + 3, accounting + 4, compliance + 5, addresses + 6; the catalogue + 7 and
# the products' names and scenarios + 8
SEED_OFFSET = 7
NEW_SHARE = 0.05  # products the shop sells before the ERP knows them, per ERP item stock control holds
LAUNCH_SHARE = 0.2  # the ERP's items the shop starts selling on the first demo day
SCENARIO_SHARE = 0.05  # each scenario's share of the products that can have it (at least one)
WORDS = ("Classic", "Eco", "Mini", "Pro", "Travel", "Family", "Deluxe", "Basic", "Smart", "Outdoor")


def tables(shop: MetaData) -> None:
    """The shop's ``products`` table."""
    Table(
        "products", shop,
        Column("sku", String(40), primary_key=True), Column("name", String(200)),
        Column("updated_at", DateTime, nullable=False),
        Index("ix_products_cursor", "updated_at", "sku"),
    )  # fmt: skip


def stock_columns() -> list[Column[Any]]:
    """Stock control's columns for the shop's product name, on ``stock_items``."""
    return [Column("shop_name", String(200)), Column("shop_changed_at", DateTime)]


def ordered_products(shop: MetaData) -> Select[Any]:
    """The shop's view ``ordered_products``: products some order line names, dated by the later of
    their own change and the first line naming them."""
    products, lines = shop.tables["products"], shop.tables["order_lines"]
    first = (
        select(lines.c.sku, func.min(lines.c.updated_at).label("first_ordered"))
        .where(lines.c.sku.is_not(None))
        .group_by(lines.c.sku)
        .subquery()
    )
    changed = case((products.c.updated_at > first.c.first_ordered, products.c.updated_at), else_=first.c.first_ordered)
    return select(products.c.sku, products.c.name, changed.label("updated_at")).select_from(
        products.join(first, first.c.sku == products.c.sku)
    )


def catalogue(rows: Rows, seed: int) -> tuple[list[str], list[str]]:
    """The SKUs the shop sold before the demo days, and those it launches on the first one:
    ``LAUNCH_SHARE`` of the ERP's items stock control holds, and every new ``WEB-…`` one."""
    held = sorted({row["sku"] for row in rows.tables.get(("stockctl", "stock_items"), [])})
    rng = np.random.default_rng(seed + SEED_OFFSET)
    order = [held[i] for i in rng.permutation(len(held))]
    cut = max(3, int(len(held) * LAUNCH_SHARE))
    new = [f"WEB-{i:05d}" for i in range(max(3, int(len(held) * NEW_SHARE)))]
    return sorted(order[cut:]), sorted(order[:cut]) + new


def build(rows: Rows, skus: list[str], start: date, days: int, seed: int) -> None:
    """The shop's products, stock control's names of them and the labels of ``webshop_to_stockctl``.

    Runs after the order lines are made (``accounting.build``): a product's change time depends on them.
    """
    _Catalogue(rows, skus, datetime.combine(start, datetime.min.time()), days, seed).build()


class _Catalogue:
    """The shop's products: each one's scenario from when an order first named it, its rows and its label."""

    def __init__(self, rows: Rows, skus: list[str], first_day: datetime, days: int, seed: int) -> None:
        self.rows, self.skus, self.first_day, self.days = rows, skus, first_day, days
        self.rng = np.random.default_rng(seed + SEED_OFFSET + 1)
        self.stock = {row["sku"]: row for row in rows.tables.get(("stockctl", "stock_items"), [])}
        self.first_ordered: dict[str, datetime] = {}
        for line in rows.tables.get(("webshop", "order_lines"), []):
            sku, when = line["sku"], line["updated_at"]
            if sku is not None:
                self.first_ordered[sku] = min(when, self.first_ordered.get(sku, when))

    def build(self) -> None:
        demo_first = [s for s in self.skus if self._on_demo_days(self.first_ordered.get(s))]
        first_on_demo_days = set(demo_first)
        earlier = [s for s in self.skus if s in self.first_ordered and s not in first_on_demo_days and s in self.stock]
        unordered = [s for s in self.skus if s not in self.first_ordered and s in self.stock]
        scenario = dict.fromkeys(demo_first, "in_sync")
        held = [s for s in demo_first if s in self.stock]
        for name, pool in (("overwritten", held), ("invalid", held), ("delayed", earlier), ("unordered", unordered)):
            free = [s for s in pool if scenario.get(s, "in_sync") == "in_sync"]
            for i in self.rng.permutation(len(free))[: max(1, int(len(free) * SCENARIO_SHARE))]:
                scenario[free[int(i)]] = name
        for sku in self.skus:
            self._product(sku, scenario.get(sku, "history"))

    def _on_demo_days(self, when: datetime | None) -> bool:
        return when is not None and self.first_day <= when < self.first_day + timedelta(days=self.days)

    def _product(self, sku: str, scenario: str) -> None:
        name, old_ts = f"{self._word()} {self._word()} {sku[-3:]}", self._history_ts()
        shop_name, shop_ts, first = name, old_ts, self.first_ordered.get(sku)
        if scenario in ("delayed", "unordered"):
            name, shop_ts = f"{name} {self._word()}", self._demo_ts()
        elif scenario == "invalid":
            name = None
        self.rows.add("webshop", "products", {"sku": sku, "name": name, "updated_at": shop_ts})
        if sku in self.stock:
            stock_ts = old_ts
            if scenario == "overwritten" and first is not None:
                shop_name, stock_ts = f"{shop_name} (stock)", first + timedelta(hours=1)
            self.stock[sku].update(shop_name=shop_name, shop_changed_at=stock_ts)
        elif first is not None and first < self.first_day:
            erp_fields = dict.fromkeys(("title", "price", "currency", "qty", "last_change"))
            self.rows.add("stockctl", "stock_items", {"sku": sku, **erp_fields, "shop_name": shop_name,
                          "shop_changed_at": old_ts})  # fmt: skip
        if scenario not in ("history", "unordered"):
            self._label(sku, scenario, max(first or shop_ts, shop_ts))

    def _label(self, sku: str, scenario: str, when: datetime) -> None:
        if scenario == "invalid":
            self.rows.label(FLOW, "product", sku, "invalid", when, NOT_NULL)
        else:
            self.rows.label(FLOW, "product", sku, "missing" if sku not in self.stock else scenario, when)

    def _word(self) -> str:
        return WORDS[int(self.rng.integers(len(WORDS)))]

    def _history_ts(self) -> datetime:
        return self.first_day - timedelta(days=30) + timedelta(seconds=int(self.rng.integers(0, 29 * 86400)))

    def _demo_ts(self) -> datetime:
        return self.first_day + timedelta(days=int(self.rng.integers(self.days)), seconds=int(self.rng.integers(86400)))
