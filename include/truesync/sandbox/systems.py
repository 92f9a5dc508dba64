"""The sandbox: demo systems with realistic data, every kind of drift, and ground truth.

A web shop (customers, orders and their lines) and an ERP (stock items, prices) are the
sources; a CRM, a stock-control system and accounting (``sandbox.accounting``) are the
targets. The point of sale (``sandbox.pos``) adds terminal exports as a source and the back
office's price list as a target; customers' addresses are shared by the shop and the CRM
(``sandbox.addresses``). History before the demo dates is in sync; during the demo
days records are created, changed, overwritten in the target, made to disagree without a
timing explanation, or broken on purpose. ``labels.csv`` says, per record,
which class, outcome and check the first run that sees it must report.
The quiet drift only a full compare finds is planned and labelled by ``sandbox.drift``.

Values come from small Faker pools combined with numpy, so a million customers take
seconds, not minutes.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from faker import Faker
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    Select,
    String,
    Table,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import CITEXT
from sqlalchemy.engine import URL

from truesync.config import Config
from truesync.sandbox import DEMO_DAYS, DEMO_START, accounting, addresses, compliance, pos, products
from truesync.sandbox.made import BETWEEN, IN_SET, NOT_NULL, PARENT, REGEX, UNIQUE, UNSEEN, Customer, Made, Order
from truesync.support import bulk
from truesync.support.connections import sqlalchemy_url
from truesync.support.sqldb import open_engine

INSERT_BATCH = 20_000

# (scenario, share of the population) for each entity; the rest is untouched history.
SHARES = {
    "in_sync": 0.03,
    "missing": 0.08,
    "delayed_late": 0.04,
    "delayed_early": 0.04,
    "overwritten": 0.03,
    "mismatched": 0.02,
}
BAD = ("unknown_code", "unparseable", "duplicate_key", "null_key")
BAD_SHARE = 0.002
# Bad records only one entity can have: a failed format or range check (bad_phone only warns).
EXTRA_BAD = {"customer": ("bad_email", "bad_phone"), "order": ("bad_currency",), "stock_item": ("negative_price",)}


def tables() -> dict[str, MetaData]:
    """Table layouts per system: sources index (cursor, key); targets have a unique key."""
    shop, erp, crm, stock = MetaData(), MetaData(), MetaData(), MetaData()
    Table(
        "customers", shop,
        Column("row_id", Integer, primary_key=True, autoincrement=True),
        Column("ext_id", String(40)), Column("email_address", String(120)), Column("full_name", String(120)),
        Column("phone", String(40)), Column("address", String(200)), Column("birth_date", String(40)),
        Column("tier_code", String(4)), Column("updated_at", DateTime, nullable=False),
        Index("ix_customers_cursor", "updated_at", "ext_id"), Index("ix_customers_key", "ext_id"),
    )  # fmt: skip
    Table(
        "orders", shop,
        Column("row_id", Integer, primary_key=True, autoincrement=True),
        Column("order_no", String(40)), Column("customer_ext_id", String(40)), Column("status_code", String(4)),
        Column("total", Numeric(12, 2)), Column("currency", String(3)), Column("placed_at", String(40)),
        Column("updated_at", DateTime, nullable=False),
        Index("ix_orders_cursor", "updated_at", "order_no"), Index("ix_orders_key", "order_no"),
    )  # fmt: skip
    Table(
        "items", erp,
        Column("row_id", Integer, primary_key=True, autoincrement=True),
        Column("sku", String(40)), Column("description", String(200)), Column("unit_price", String(20)),
        Column("currency", String(3)), Column("changed_at", DateTime, nullable=False),
        Index("ix_items_cursor", "changed_at", "sku"), Index("ix_items_key", "sku"),
    )  # fmt: skip
    Table(
        "contacts", crm,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("external_id", String(40), nullable=False, unique=True), Column("email", String(120)),
        Column("display_name", String(120)), Column("phone", String(40)), Column("street_address", String(200)),
        Column("dob", Date), Column("tier", String(10)), Column("segment", String(20)),
        Column("modified_at", DateTime), *compliance.crm_columns(),
    )  # fmt: skip
    Table(
        "deals", crm,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_ref", String(40), nullable=False, unique=True), Column("contact_ref", String(40)),
        Column("stage", String(12)), Column("amount", Numeric(12, 2)), Column("currency", String(3)),
        Column("ordered_on", DateTime), Column("modified_at", DateTime),
    )  # fmt: skip
    Table(
        "activities", crm,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("external_id", String(60), nullable=False, unique=True), Column("terminal", String(10)),
        Column("state", String(30)), Column("deal_ref", String(40)), Column("amount", Numeric(12, 2)),
        Column("occurred_at", DateTime), Column("modified_at", DateTime),
    )  # fmt: skip
    compliance.crm_assets(crm)
    Table(
        "stock_items", stock,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("sku", String(40), nullable=False, unique=True), Column("title", String(200)),
        Column("price", Numeric(12, 2)), Column("currency", String(3)), Column("qty", Integer),
        Column("last_change", DateTime), *products.stock_columns(),
    )  # fmt: skip
    products.tables(shop)
    pos.store_table(erp)
    books = accounting.tables(shop)
    return {"webshop": shop, "erp": erp, "crm": crm, "stockctl": stock, "pos": pos.tables(), "accounting": books,
            "compliance": compliance.tables()}  # fmt: skip


def views(metadata: dict[str, MetaData]) -> dict[str, dict[str, Select]]:
    """Views per system, made after its tables: the ERP's items once per store, the products orders name,
    accounting's invoices with the balance its finance ledger leaves open."""
    return {"erp": {"store_items": pos.store_items(metadata["erp"])},
            "webshop": {"ordered_products": products.ordered_products(metadata["webshop"])},
            "accounting": {"invoice_balances": accounting.invoice_balances(metadata["accounting"])}}  # fmt: skip


@dataclass
class Rows:
    """Rows to insert per system table, and the ground-truth labels."""

    tables: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    labels: list[dict[str, Any]] = field(default_factory=list)

    def add(self, system: str, table: str, row: dict[str, Any]) -> None:
        self.tables.setdefault((system, table), []).append(row)

    def write_labels(self, path: Path) -> Path:
        """The labels as a ground-truth file (``labels.csv``, ``delivery_labels.csv``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            fields = ["flow", "entity", "key", "class", "outcome", "overdue", "check", "changed_at"]
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.labels)
        return path

    def label(
        self,
        flow: str,
        entity: str,
        key: str | None,
        klass: str,
        when: datetime | None,
        check: str = "",
        also: tuple[tuple[str, str], ...] = (),
        outcome: str = "",
    ) -> None:
        """What the first run of ``flow`` that sees the record must report.

        ``also``: other (class, check) pairs it may report instead, where two flows race
        (``groundtruth.differences``); the class ``UNSEEN`` says no run may see it at all.
        A record with a check is quarantined unless ``outcome`` says it was written all the same.
        """
        for each_class, each_check in ((klass, check), *also):
            self.labels.append(_label(flow, entity, key, each_class, when, each_check, outcome))


def _label(
    flow: str, entity: str, key: str | None, klass: str, when: datetime | None, check: str, outcome: str = ""
) -> dict[str, Any]:
    if not outcome:
        by_class = {"in_sync": "unchanged", "missing": "created", "invalid": "quarantined", UNSEEN: ""}
        outcome = "quarantined" if check else by_class.get(klass, "updated")
    overdue = klass in ("missing", "delayed") and when is not None and when < _day_end(when) - SLA
    return {
        "flow": flow,
        "entity": entity,
        "key": key or "",
        "class": klass,
        "outcome": outcome,
        "overdue": overdue,
        "check": check,
        "changed_at": when.isoformat() if when else "",
    }


SLA = timedelta(hours=6)


def _day_end(ts: datetime) -> datetime:
    return datetime.combine(ts.date() + timedelta(days=1), datetime.min.time())


class _Gen:
    """Random but reproducible values: Faker pools combined by numpy."""

    def __init__(self, seed: int, start: date, days: int) -> None:
        self.rng = np.random.default_rng(seed)
        fake = Faker()
        Faker.seed(seed)
        self.first = [fake.first_name() for _ in range(300)]
        self.last = [fake.last_name() for _ in range(300)]
        self.streets = [fake.street_address() for _ in range(500)]
        self.cities = [fake.city() for _ in range(200)]
        self.words = [fake.word() for _ in range(300)]
        self.start = datetime.combine(start, datetime.min.time())
        self.days = days

    def pick(self, pool: list[str]) -> str:
        return pool[int(self.rng.integers(len(pool)))]

    def name(self) -> str:
        return f"{self.pick(self.first)} {self.pick(self.last)}"

    def address(self) -> str:
        return f"{self.pick(self.streets)}, {self.pick(self.cities)}"

    def history_ts(self) -> datetime:
        return self.start - timedelta(days=30) + timedelta(seconds=int(self.rng.integers(0, 29 * 86400)))

    def demo_ts(self, early: bool | None = None) -> datetime:
        """A whole-second time on a demo day; early = before the SLA cut-off of that day."""
        day = int(self.rng.integers(self.days))
        low, high = (0, 18 * 3600) if early else (18 * 3600, 86400) if early is False else (0, 86400)
        return self.start + timedelta(days=day, seconds=int(self.rng.integers(low, high)))

    def price(self) -> str:
        return f"{self.rng.integers(100, 100_000) / 100:.2f}"


def _plan(n: int, entity: str) -> list[str]:
    """The scenario of each of ``n`` records: shares, at least one of each kind, rest history."""
    plan: list[str] = []
    for scenario, share in SHARES.items():
        plan += [scenario] * max(1, int(n * share))
    for bad in BAD + EXTRA_BAD[entity]:
        plan += [bad] * max(1, int(n * BAD_SHARE))
    return plan + ["history"] * max(0, n - len(plan))


def build(scale: int, seed: int, start: date = DEMO_START, days: int = DEMO_DAYS) -> Rows:
    """Generate every table's rows and the labels, deterministically from the seed."""
    gen, rows, made = _Gen(seed, start, days), Rows(), Made()
    customers = _customers(gen, rows, scale, made)
    _orders(gen, rows, scale, customers, made)
    _stock_items(gen, rows, max(10, scale // 2))
    sold, launched = products.catalogue(rows, seed)
    accounting.build(rows, made, sold, launched, seed)
    products.build(rows, [*sold, *launched], start, days, seed)
    compliance.build(rows, made, start, days, seed)
    addresses.build(rows, made, start, days, seed)
    return rows


TIERS_SHOP = {"gold": "G", "silver": "S", "bronze": "B"}
TIERS_CRM = {"gold": "GOLD", "silver": "SILVER", "bronze": "BRONZE"}
STATUS_SHOP = {"pending": "P", "paid": "PD", "shipped": "S", "cancelled": "C"}
STATUS_CRM = {"pending": "new", "paid": "paid", "shipped": "fulfilled", "cancelled": "lost"}


def _customers(gen: _Gen, rows: Rows, n: int, made: Made) -> dict[str, list[tuple[str, datetime]]]:
    """Returns customer ids usable as order parents (with the time they exist from) and bad ones."""
    usable: list[tuple[str, datetime]] = []
    bad: list[tuple[str, datetime]] = []
    for i, scenario in enumerate(_plan(n, "customer")):
        key = f"C{i:07d}"
        tier = gen.pick(list(TIERS_SHOP))
        born = date(1950, 1, 1) + timedelta(days=int(gen.rng.integers(0, 20000)))
        base = {"name": gen.name(), "email": f"{key.lower()}@example.com", "phone": f"+44 20 7{i:07d}",
                "address": gen.address(), "birth_date": born.isoformat(), "tier": tier}  # fmt: skip
        old_ts = gen.history_ts()
        src, tgt, ts, tgt_ts = dict(base), dict(base), old_ts, old_ts
        if scenario == "history":
            usable.append((key, old_ts))
        elif scenario == "in_sync":
            ts = gen.demo_ts()
            rows.label("webshop_to_crm", "customer", key, "in_sync", ts)
        elif scenario in ("missing", "bad_phone"):
            ts, tgt = gen.demo_ts(), None
            src["phone"] = "call after 6pm" if scenario == "bad_phone" else src["phone"]
            rows.label("webshop_to_crm", "customer", key, "missing", ts)
        elif scenario.startswith("delayed"):
            ts = gen.demo_ts(early=scenario == "delayed_early")
            src["address"] = gen.address() + " (moved)"
            rows.label("webshop_to_crm", "customer", key, "delayed", ts)
        elif scenario == "overwritten":
            ts = gen.demo_ts()
            tgt["phone"], tgt_ts = src["phone"] + "9", ts + timedelta(hours=3)  # a digit too many, typed in the CRM
            rows.label("webshop_to_crm", "customer", key, "overwritten", ts)
        elif scenario == "mismatched":
            ts = gen.demo_ts()
            tgt["name"], tgt_ts = base["name"] + " Jr", ts
            rows.label("webshop_to_crm", "customer", key, "mismatched", ts)
        else:
            ts = gen.demo_ts()
            src = _break_customer(scenario, src, key, rows, ts)
            if scenario != "null_key":
                bad.append((key, ts))
        if src is not None:
            copies = 2 if scenario == "duplicate_key" else 1
            for copy in range(copies):
                name = src["name"] + (" (copy)" if copy else "")
                ext_id = None if scenario == "null_key" else key
                rows.add("webshop", "customers", {"ext_id": ext_id, "email_address": src["email"], "full_name": name,
                         "phone": src["phone"], "address": src["address"], "birth_date": src["birth_date"],
                         "tier_code": src.get("tier_code", TIERS_SHOP.get(src["tier"])), "updated_at": ts})  # fmt: skip
        if tgt is not None:
            rows.add("crm", "contacts", {"external_id": key, "email": tgt["email"], "display_name": tgt["name"],
                     "phone": tgt["phone"], "street_address": tgt["address"],
                     "dob": date.fromisoformat(tgt["birth_date"]), "tier": TIERS_CRM[tgt["tier"]],
                     "segment": gen.pick(["retail", "wholesale", "vip"]), "modified_at": tgt_ts})  # fmt: skip
        if scenario in ("missing", "bad_phone"):
            usable.append((key, ts))
        made.customers.append(Customer(key, scenario, base, ts, old_ts))
    return {"usable": usable, "bad": bad}


def _break_customer(scenario: str, src: dict[str, Any], key: str, rows: Rows, ts: datetime) -> dict[str, Any]:
    checks = {"unknown_code": (IN_SET, {"tier_code": "X"}), "unparseable": (REGEX, {"birth_date": "31/02/1990"}),
              "duplicate_key": (UNIQUE, {}), "null_key": (NOT_NULL, {}),
              "bad_email": (REGEX, {"email": f"{key.lower()}.example.com"})}  # fmt: skip
    check, change = checks[scenario]
    rows.label("webshop_to_crm", "customer", None if scenario == "null_key" else key, "invalid", ts, check)
    return {**src, **change}


def _orders(gen: _Gen, rows: Rows, n: int, customers: dict[str, list[tuple[str, datetime]]], made: Made) -> None:
    usable, bad = customers["usable"], customers["bad"]
    plan = _plan(n, "order") + ["orphan"] * len(bad)
    orphans = iter(bad)
    for i, scenario in enumerate(plan):
        key = f"O{i:07d}"
        if scenario == "orphan":
            parent, ts = next(orphans)
            ts = _same_day_after(ts)
        else:
            parent, since = usable[int(gen.rng.integers(len(usable)))]
            ts = None
        status = gen.pick(["pending", "paid"])
        old_ts = gen.history_ts()
        base = {"customer": parent, "status": status, "total": gen.price(), "currency": "EUR",
                "placed": (old_ts - timedelta(hours=1)).isoformat(sep=" ")}  # fmt: skip
        src, tgt, tgt_ts = dict(base), dict(base), old_ts
        if scenario != "orphan":
            ts, src, tgt, tgt_ts = _order_scenario(gen, rows, scenario, key, since, base, old_ts)
        else:
            tgt = None
            rows.label("webshop_to_crm", "order", key, "missing", ts, PARENT)
        if src is not None:
            for copy in range(2 if scenario == "duplicate_key" else 1):
                rows.add("webshop", "orders", {"order_no": None if scenario == "null_key" else key,
                         "customer_ext_id": src["customer"], "status_code": src.get("code", STATUS_SHOP[src["status"]]),
                         "total": src["total"] if not copy else "1.00", "currency": src["currency"],
                         "placed_at": src["placed"], "updated_at": ts})  # fmt: skip
        if tgt is not None:
            rows.add("crm", "deals", {"order_ref": key, "contact_ref": tgt["customer"],
                     "stage": STATUS_CRM[tgt["status"]], "amount": tgt["total"], "currency": tgt["currency"],
                     "ordered_on": datetime.fromisoformat(tgt["placed"]), "modified_at": tgt_ts})  # fmt: skip
        made.orders.append(Order(key, scenario, parent, base, src, ts, old_ts))


def _order_scenario(
    gen: _Gen, rows: Rows, scenario: str, key: str, since: datetime, base: dict[str, Any], old_ts: datetime
) -> tuple[datetime, dict[str, Any] | None, dict[str, Any] | None, datetime]:
    src, tgt, tgt_ts = dict(base), dict(base), old_ts

    def later(early: bool | None = None) -> datetime:
        """A change time no earlier than the run in which the parent customer exists."""
        ts = gen.demo_ts(early)
        return ts if ts >= since else _same_day_after(since)

    if scenario == "history":
        return old_ts, src, tgt, tgt_ts
    ts = later(early=scenario == "delayed_early" if scenario.startswith("delayed") else None)
    label: Callable[..., None] = rows.label
    if scenario == "in_sync":
        label("webshop_to_crm", "order", key, "in_sync", ts)
    elif scenario == "missing":
        tgt = None
        src["placed"] = (ts - timedelta(minutes=5)).isoformat(sep=" ")
        label("webshop_to_crm", "order", key, "missing", ts)
    elif scenario.startswith("delayed"):
        src["status"] = "shipped"
        label("webshop_to_crm", "order", key, "delayed", ts)
    elif scenario == "overwritten":
        tgt["total"], tgt_ts = "0.00", ts + timedelta(hours=2)
        label("webshop_to_crm", "order", key, "overwritten", ts)
    elif scenario == "mismatched":
        tgt["status"], tgt_ts = "cancelled", ts
        label("webshop_to_crm", "order", key, "mismatched", ts)
    else:
        checks = {"unknown_code": (IN_SET, {"code": "ZZ"}), "unparseable": (REGEX, {"placed": "yesterday"}),
                  "duplicate_key": (UNIQUE, {}), "null_key": (NOT_NULL, {}),
                  "bad_currency": (IN_SET, {"currency": "EURO"})}  # fmt: skip
        check, change = checks[scenario]
        src.update(change)
        label("webshop_to_crm", "order", None if scenario == "null_key" else key, "invalid", ts, check)
    return ts, src, tgt, tgt_ts


def _same_day_after(since: datetime) -> datetime:
    return min(since + timedelta(seconds=1), _day_end(since) - timedelta(seconds=1))


def _stock_items(gen: _Gen, rows: Rows, n: int) -> None:
    for i, scenario in enumerate(_plan(n, "stock_item")):
        key = f"SKU-{i:06d}"
        base = {"name": f"{gen.pick(gen.words).title()} {gen.pick(gen.words)}", "price": gen.price()}
        old_ts = gen.history_ts()
        src, tgt, ts, tgt_ts = dict(base), dict(base), old_ts, old_ts
        klass, check = None, ""
        if scenario != "history":
            ts = gen.demo_ts(early=scenario == "delayed_early" if scenario.startswith("delayed") else None)
        if scenario in ("in_sync", "missing"):
            klass, tgt = scenario, (None if scenario == "missing" else tgt)
        elif scenario.startswith("delayed"):
            klass, src["price"] = "delayed", gen.price()
        elif scenario == "overwritten":
            klass, tgt["price"], tgt_ts = "overwritten", "0.01", ts + timedelta(hours=1)
        elif scenario == "mismatched":
            klass, tgt["name"], tgt_ts = "mismatched", base["name"] + " (old)", ts
        elif scenario in BAD + EXTRA_BAD["stock_item"]:
            klass = "invalid"
            check = {"unknown_code": REGEX, "unparseable": REGEX, "negative_price": BETWEEN,
                     "duplicate_key": UNIQUE, "null_key": NOT_NULL}[scenario]  # fmt: skip
            prices = {"unparseable": "12,5O", "unknown_code": "n/a", "negative_price": "-5.00"}
            src["price"] = prices.get(scenario, src["price"])
        if klass:
            rows.label("erp_to_stockctl", "stock_item", None if scenario == "null_key" else key, klass, ts, check)
        for copy in range(2 if scenario == "duplicate_key" else 1):
            rows.add("erp", "items", {"sku": None if scenario == "null_key" else key,
                     "description": src["name"] + (" v2" if copy else ""), "unit_price": src["price"],
                     "currency": "EUR", "changed_at": ts})  # fmt: skip
        if tgt is not None:
            rows.add("stockctl", "stock_items", {"sku": key, "title": tgt["name"], "price": tgt["price"],
                     "currency": "EUR", "qty": int(gen.rng.integers(0, 500)), "last_change": tgt_ts})  # fmt: skip


def local_connections(state: Path) -> dict[str, str]:
    """The sandbox's Airflow connections for the state directory ``state``, as environment variables:
    each SQL system a SQLite file in ``state/sandbox``, the POS terminals' drop folder beside them."""
    files = state / "sandbox"
    connections = {f"AIRFLOW_CONN_TRUESYNC_{name.upper()}": f"sqlite:///{files / f'{name}.db'}" for name in tables()}
    connections["AIRFLOW_CONN_TRUESYNC_POS_EVENTS"] = (files / "pos").as_uri()
    return connections


def system_urls(config: Config) -> dict[str, URL]:
    """The URL of each sandbox system, from its Airflow connection."""
    return {name: sqlalchemy_url(config.systems[name].connection) for name in tables()}


def _uses(metadata: MetaData, kind: type) -> bool:
    """Whether a column of the layout takes the type ``kind`` on PostgreSQL (an extension's type)."""
    dialect = postgresql.dialect()
    return any(isinstance(c.type.dialect_impl(dialect), kind) for t in metadata.tables.values() for c in t.columns)


def write(rows: Rows, urls: dict[str, URL], labels_path: Path) -> dict[str, int]:
    """(Re)create the sandbox tables in each system, insert the rows, write the labels."""
    counts: dict[str, int] = {}
    layouts = tables()
    for system, metadata in layouts.items():
        if urls[system].get_backend_name() == "sqlite" and urls[system].database:
            Path(urls[system].database).parent.mkdir(parents=True, exist_ok=True)
        engine = open_engine(urls[system])
        made = views(layouts).get(system, {})
        with engine.begin() as conn:
            for name in made:
                conn.execute(text(f"DROP VIEW IF EXISTS {name}"))
        metadata.drop_all(engine)
        if engine.dialect.name == "postgresql" and _uses(metadata, CITEXT):
            with engine.begin() as conn:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS citext"))
        metadata.create_all(engine)
        for table in metadata.sorted_tables:
            data = rows.tables.get((system, table.name), [])
            with engine.begin() as conn:
                for start in range(0, len(data), INSERT_BATCH):
                    bulk.insert(conn, table, data[start : start + INSERT_BATCH])
            counts[f"{system}.{table.name}"] = len(data)
        with engine.begin() as conn:
            for name, query in made.items():
                sql = query.compile(engine, compile_kwargs={"literal_binds": True})
                conn.execute(text(f"CREATE VIEW {name} AS {sql}"))
        engine.dispose()
    rows.write_labels(labels_path)
    return counts
