"""The sandbox's accounting system, and the web shop's order lines it receives (flow ``webshop_to_accounting``).

Accounting (system ``accounting``) keeps customer accounts under its own account numbers,
found by the shop's customer id (``customer_ref``), and sales orders with their lines. Its
tables have real foreign keys: a sales order needs its account, a line its sales order. So
a flow that wrote an order before its customer, or a line before its order, would be
refused by the database, on SQLite (``support.sqldb`` turns foreign keys on), PostgreSQL
and MariaDB alike.

The web shop's orders carry one to three lines each (table ``order_lines``), named by order
and line number: the entity ``order_line`` has the composite key ``[order_id, line_no]``.

Accounting starts as the shop was before the demo days, for the customers and orders it
knew: every history customer (and any customer a history order belongs to), every order of
a customer it knew, with their lines. The shop's demo-day changes then reach it as they
reach the CRM, and labels say what the first run of ``webshop_to_accounting`` that sees
each record must report. Some lines drift on their own (``LINE_SCENARIOS``): a quantity
changed in the shop, a price edited in accounting, a negative quantity, a line without a
product. One new shop customer's id differs from an account holder's only in case
(``_collision``): accounting, which finds accounts without case, would book both on one.

Accounting also keeps the books a payment is reconciled against (``sandbox.rest`` fills
them): invoices of sales orders, and a finance ledger of payments and refunds booked on
them. The view ``invoice_balances`` gives each invoice the balance its ledger leaves open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Select,
    String,
    case,
    func,
    select,
)
from sqlalchemy import Table as SqlTable
from sqlalchemy.dialects.postgresql import CITEXT

from truesync.core.keys import record_key
from truesync.sandbox.made import (
    BETWEEN,
    IN_SET,
    NOT_NULL,
    PARENT,
    REGEX,
    UNIQUE,
    UNIQUE_MATCH,
    Customer,
    Made,
    Order,
    Rows,
)  # fmt: skip

FLOW = "webshop_to_accounting"
CRM_FLOW = "webshop_to_crm"
SEED_OFFSET = 4  # the payment gateway draws from seed + 1, the quiet drift from seed + 2, the POS from seed + 3
STATUS = {"pending": "OPEN", "paid": "PAID", "shipped": "SHIPPED", "cancelled": "VOID"}
LINE_SCENARIOS = ("delayed", "overwritten", "negative_quantity", "no_product")
LINE_SHARE = 0.02  # each line scenario's share of the lines that can have it (at least one)

# A customer's scenario -> what the first accounting run finds (accounting maps name, email and address only).
CUSTOMER_CLASS = {
    "in_sync": "in_sync", "missing": "missing", "bad_phone": "missing", "delayed_late": "delayed",
    "delayed_early": "delayed", "overwritten": "in_sync", "mismatched": "in_sync", "unknown_code": "in_sync",
    "unparseable": "in_sync",
}  # fmt: skip
CUSTOMER_CHECK = {"duplicate_key": UNIQUE, "null_key": NOT_NULL, "bad_email": REGEX}
NEW_CUSTOMERS = ("missing", "bad_phone", "null_key")  # no account unless a history order needs one
# An order's scenario -> what the first accounting run finds, when accounting holds the order.
ORDER_CLASS = {"in_sync": "in_sync", "missing": "missing", "delayed_late": "delayed", "delayed_early": "delayed",
               "overwritten": "in_sync", "mismatched": "in_sync"}  # fmt: skip
ORDER_CHECK = {"unknown_code": IN_SET, "unparseable": REGEX, "duplicate_key": UNIQUE, "null_key": NOT_NULL,
               "bad_currency": IN_SET}  # fmt: skip
NEW_ORDERS = ("missing", "orphan", "null_key")
QUARANTINING_CUSTOMERS = ("duplicate_key", "bad_email")  # held in accounting: their orders wait
# Accounting finds an account by the shop's customer id without case (SQLite NOCASE, PostgreSQL citext,
# MariaDB's default collation): two shop ids differing only in case name one account.
CUSTOMER_REF = String(40).with_variant(String(40, collation="NOCASE"), "sqlite").with_variant(CITEXT(), "postgresql")


def tables(shop: MetaData) -> MetaData:
    """Accounting's tables; the shop's order lines join the shop's ``shop`` tables."""
    SqlTable(
        "order_lines", shop,
        Column("row_id", Integer, primary_key=True, autoincrement=True),
        Column("order_no", String(40)), Column("line_no", Integer), Column("sku", String(40)),
        Column("quantity", Integer), Column("unit_price", Numeric(12, 2)),
        Column("updated_at", DateTime, nullable=False),
        Index("ix_order_lines_cursor", "updated_at", "order_no", "line_no"),
        Index("ix_order_lines_key", "order_no", "line_no"),
    )  # fmt: skip
    books = MetaData()
    SqlTable(
        "accounts", books,
        Column("account_no", Integer, primary_key=True, autoincrement=True),
        Column("customer_ref", CUSTOMER_REF, nullable=False, unique=True), Column("name", String(120)),
        Column("email", String(120)), Column("postal_address", String(200)), Column("modified_at", DateTime),
    )  # fmt: skip
    SqlTable(
        "sales_orders", books,
        Column("order_no", Integer, primary_key=True, autoincrement=True),
        Column("order_ref", String(40), nullable=False, unique=True),
        Column("customer_ref", CUSTOMER_REF, ForeignKey("accounts.customer_ref"), nullable=False),
        Column("status", String(10)), Column("total", Numeric(12, 2)), Column("currency", String(3)),
        Column("ordered_at", DateTime), Column("modified_at", DateTime),
    )  # fmt: skip
    SqlTable(
        "sales_order_lines", books,
        Column("order_ref", String(40), ForeignKey("sales_orders.order_ref"), nullable=False),
        Column("line_no", Integer, nullable=False), Column("sku", String(40)), Column("quantity", Integer),
        Column("unit_price", Numeric(12, 2)), Column("modified_at", DateTime),
        PrimaryKeyConstraint("order_ref", "line_no"),
    )  # fmt: skip
    SqlTable(
        "invoices", books,
        Column("invoice_ref", String(40), primary_key=True),
        Column("order_ref", String(40), ForeignKey("sales_orders.order_ref"), nullable=False),
        Column("customer_ref", String(40), nullable=False), Column("total", Numeric(12, 2)),
        Column("modified_at", DateTime),
    )  # fmt: skip
    SqlTable(
        "finance_entries", books,
        Column("entry_ref", String(40), primary_key=True),
        Column("invoice_ref", String(40), ForeignKey("invoices.invoice_ref"), nullable=False),
        Column("order_ref", String(40)), Column("customer_ref", String(40)), Column("kind", String(10)),
        Column("state", String(10)), Column("amount", Numeric(12, 2)), Column("currency", String(3)),
        Column("booked_at", DateTime),
    )  # fmt: skip
    return books


def invoice_balances(books: MetaData) -> Select[Any]:
    """Accounting's view ``invoice_balances``: each invoice with the balance its finance ledger leaves open,
    its total less captured payments plus paid-out refunds."""
    invoices, entries = books.tables["invoices"], books.tables["finance_entries"]
    effect = case(
        ((entries.c.kind == "payment") & (entries.c.state == "captured"), -entries.c.amount),
        ((entries.c.kind == "refund") & (entries.c.state == "refunded"), entries.c.amount),
        else_=0,
    )
    balance = invoices.c.total + func.coalesce(func.sum(effect), 0)
    columns = [invoices.c.invoice_ref, invoices.c.order_ref, invoices.c.customer_ref, invoices.c.total]
    return (
        select(*columns, balance.label("balance"), invoices.c.modified_at)
        .select_from(invoices.outerjoin(entries, entries.c.invoice_ref == invoices.c.invoice_ref))
        .group_by(*columns, invoices.c.modified_at)
    )


@dataclass
class _Line:
    order: Order
    number: int
    values: dict[str, Any]  # sku, quantity, unit_price as the shop had them before the demo days
    scenario: str = ""


class _Books:
    """Accounting's rows and the flow's labels, built from what the sandbox made."""

    def __init__(self, rows: Rows, made: Made, skus: list[str], launched: list[str], rng: np.random.Generator) -> None:
        self.rows, self.made, self.rng = rows, made, rng
        self.skus = {True: skus, False: [*skus, *launched]}  # by "the order is from before the demo days"
        self.scenario = {c.key: c.scenario for c in made.customers}
        history_parents = {o.parent for o in made.orders if o.scenario == "history"}
        self.accounts = {c.key for c in made.customers if c.scenario not in NEW_CUSTOMERS or c.key in history_parents}
        self.order_outcome: dict[str, str] = {}  # demo order -> created | kept | held, in its first accounting run

    def build(self) -> None:
        for customer in self.made.customers:
            self._customer(customer)
        for order in self.made.orders:
            self._order(order)
        lines = [line for order in self.made.orders for line in self._lines(order)]
        self._plan_lines(lines)
        for line in lines:
            self._line(line)
        self._collision()

    def _collision(self) -> None:
        """A new shop customer whose id differs from an account holder's only in case: accounting would
        book both on one account, so the newcomer is held (``unique_match``) naming the holder. The CRM
        tells case apart on SQLite and PostgreSQL (created), not on MariaDB (held the same way)."""
        holders = sorted(c.key for c in self.made.customers if c.scenario == "history" and c.key in self.accounts)
        joining = [c for c in self.made.customers if c.scenario == "missing"]
        if not holders or not joining:
            return
        holder, when = holders[int(self.rng.integers(len(holders)))], joining[0].ts
        twin = holder.lower() if holder != holder.lower() else holder.upper()
        row = next(r for r in self.rows.tables[("webshop", "customers")] if r["ext_id"] == holder)
        email = f"{twin.lower()}.{row['email_address']}"
        self.rows.add("webshop", "customers", {**row, "ext_id": twin, "email_address": email, "updated_at": when})
        self.rows.label(FLOW, "customer", twin, "mismatched", when, UNIQUE_MATCH)
        self.rows.label(CRM_FLOW, "customer", twin, "missing", when, also=(("mismatched", UNIQUE_MATCH),))

    def _customer(self, c: Customer) -> None:
        if c.key in self.accounts:
            account = {"customer_ref": c.key, "name": c.base["name"], "email": c.base["email"],
                       "postal_address": c.base["address"], "modified_at": c.old_ts}  # fmt: skip
            self.rows.add("accounting", "accounts", account)
        if c.scenario == "history":
            return
        if c.scenario in CUSTOMER_CHECK:
            key = None if c.scenario == "null_key" else c.key
            self.rows.label(FLOW, "customer", key, "invalid", c.ts, CUSTOMER_CHECK[c.scenario])
            return
        klass = CUSTOMER_CLASS[c.scenario]
        self.rows.label(FLOW, "customer", c.key, "in_sync" if klass == "missing" and c.key in self.accounts else klass,
                        c.ts)  # fmt: skip

    def _held(self, o: Order) -> bool:
        """Accounting holds the order (and its lines) before the demo days."""
        return o.scenario not in NEW_ORDERS and o.parent in self.accounts

    def _order(self, o: Order) -> None:
        if self._held(o):
            self.rows.add("accounting", "sales_orders", {"order_ref": o.key, "customer_ref": o.parent,
                          "status": STATUS[o.base["status"]], "total": o.base["total"], "currency": o.base["currency"],
                          "ordered_at": datetime.fromisoformat(o.base["placed"]), "modified_at": o.old_ts})  # fmt: skip
        if o.scenario == "history":
            return
        if o.scenario in ORDER_CHECK:
            key = None if o.scenario == "null_key" else o.key
            self.rows.label(FLOW, "order", key, "invalid", o.ts, ORDER_CHECK[o.scenario])
            self.order_outcome[o.key] = "held"
        elif o.scenario == "orphan" and self.scenario[o.parent] in QUARANTINING_CUSTOMERS:
            self.rows.label(FLOW, "order", o.key, "missing", o.ts, PARENT)
            self.order_outcome[o.key] = "held"
        else:
            klass = "missing" if o.scenario == "orphan" or not self._held(o) else ORDER_CLASS[o.scenario]
            self.rows.label(FLOW, "order", o.key, klass, o.ts)
            self.order_outcome[o.key] = "created" if klass == "missing" else "kept"

    def _lines(self, o: Order) -> list[_Line]:
        """One to three lines of an order the shop holds with a number."""
        count = int(self.rng.integers(1, 4))
        if o.src is None or o.scenario == "null_key":
            return []
        return [_Line(o, n, self._line_values(o.scenario == "history")) for n in range(1, count + 1)]

    def _line_values(self, history: bool) -> dict[str, Any]:
        skus = self.skus[history]
        return {"sku": skus[int(self.rng.integers(len(skus)))], "quantity": int(self.rng.integers(1, 6)),
                "unit_price": f"{self.rng.integers(100, 20_000) / 100:.2f}"}  # fmt: skip

    def _plan_lines(self, lines: list[_Line]) -> None:
        """Give ``LINE_SHARE`` of the lines that can have each scenario that scenario (at least one each).

        A line drifts on its own only where its order reaches accounting in that run; a changed
        or edited line needs its order in accounting already.
        """
        free = [line for line in lines if self.order_outcome.get(line.order.key) in ("created", "kept")]
        self.rng.shuffle(free)  # type: ignore[arg-type]
        for scenario in LINE_SCENARIOS:
            fits = [
                line for line in free
                if not line.scenario and (scenario not in ("delayed", "overwritten") or self._held(line.order))
            ]  # fmt: skip
            for line in fits[: max(1, int(len(fits) * LINE_SHARE))]:
                line.scenario = scenario

    def _line(self, line: _Line) -> None:
        o, src, mine = line.order, dict(line.values), dict(line.values)
        key, mine_ts = record_key([o.key, str(line.number)]), o.old_ts
        ts = o.old_ts if o.scenario == "history" else o.ts
        if line.scenario == "delayed":
            src["quantity"] += 1
        elif line.scenario == "overwritten":
            mine["unit_price"], mine_ts = "0.01", ts + timedelta(hours=1)
        elif line.scenario == "negative_quantity":
            src["quantity"] = -1
        elif line.scenario == "no_product":
            src["sku"] = None
        self.rows.add("webshop", "order_lines", {"order_no": o.key, "line_no": line.number, **src, "updated_at": ts})
        if self._held(o):
            self.rows.add("accounting", "sales_order_lines", {"order_ref": o.key, "line_no": line.number, **mine,
                          "modified_at": mine_ts})  # fmt: skip
        if o.scenario != "history":
            klass, check = self._line_label(line)
            self.rows.label(FLOW, "order_line", key, klass, ts, check)

    def _line_label(self, line: _Line) -> tuple[str, str]:
        """(class, check) of the line's first accounting run; no check when it loads."""
        checks = {"negative_quantity": BETWEEN, "no_product": NOT_NULL}
        if line.scenario in checks:
            return "invalid", checks[line.scenario]
        if line.scenario:
            return line.scenario, ""
        if self._held(line.order):
            return "in_sync", ""
        return ("missing", "") if self.order_outcome[line.order.key] == "created" else ("missing", PARENT)


def build(rows: Rows, made: Made, skus: list[str], launched: list[str], seed: int) -> None:
    """Accounting's rows, the shop's order lines and the labels of ``webshop_to_accounting``, from the seed.

    A line names one of ``skus``, or of ``launched`` too where its order changed on a demo day.
    """
    _Books(rows, made, skus, launched, np.random.default_rng(seed + SEED_OFFSET)).build()
