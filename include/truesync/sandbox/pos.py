"""The sandbox's point of sale: terminal event exports (a file drop) and the back office's price list.

Terminals ``T01``..``T04`` export one CSV file a day, ``<terminal>/events-<day>.csv``: event
id, terminal, event time, a compact code, the order it belongs to (if any) and the amount.
``codes/pos_events.yaml`` turns the codes into the CRM's plain states; two codes (``R10``, a
partial refund, and ``D02``, a device rebooting) are in no version of the table yet, so their
events wait in the queue until a new version and ``truesync reprocess`` bring them in. One
event names an order nobody has (it waits for its parent); one file is delivered twice under
another name (read once); terminal ``T04`` goes offline on the last day and says nothing more
(the flow's silence alert). Events belong to orders the CRM held before the demo days.

Two deliveries come after the demo days (``plan_deliveries``, kept under ``<sandbox>/later``;
``truesync sandbox deliver`` puts them in the drop, ``delivery_labels.csv`` says what the next
run must find): a late file of ``T03`` with events of the first day that were stuck on the
terminal, and ``T01``'s export of the last day rewritten, one payment corrected to a cancelled order.

The back office (system ``pos``, table ``store_prices``) holds the price each store's tills
charge, and each store's own stock count. The ERP keeps one price per item; its view
``store_items`` offers it once per store (items × ``stores``), keyed ``<store>:<sku>``, so a
price change reaches every store's row (flow ``erp_to_pos``, entity ``store_price``). The back
office starts as the ERP was before the demo days.
"""

from __future__ import annotations

import csv
import io
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Column, DateTime, Integer, MetaData, Numeric, Select, String, Table, select, true

from truesync.config import Config
from truesync.connectors.file.location import file_location
from truesync.sandbox.made import PARENT

EVENTS_FLOW, PRICES_FLOW = "pos_events_to_crm", "erp_to_pos"
TERMINALS = ("T01", "T02", "T03", "T04")
STORES = {"S01": "High Street", "S02": "Station kiosk"}
SLA = timedelta(hours=6)  # the flows' freshness_sla
SEED_OFFSET = 3  # the payment gateway draws from seed + 1, the quiet drift from seed + 2
# code -> (state in codes/pos_events.yaml version 1, whether the event belongs to an order)
CODES = {
    "A00": ("payment_completed", True),
    "C01": ("order_cancelled", True),
    "E07": ("signature_failed", True),
    "R00": ("refunded", True),
    "D00": ("device_offline", False),
    "D01": ("device_online", False),
}
NEW_CODES = {"R10": ("partial_refund", True), "D02": ("device_rebooting", False)}  # no version knows them yet
UNKNOWN_ORDER = "O9999999"
SILENT = "T04"  # goes offline on the last demo day and sends nothing more: the flow's silence alert
HEADER = ("event_id", "terminal_id", "event_time", "code", "order_ref", "amount")


def tables() -> MetaData:
    """The back office's tables."""
    office = MetaData()
    Table(
        "store_prices", office,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("item_ref", String(50), nullable=False, unique=True), Column("store", String(10)),
        Column("sku", String(40)), Column("title", String(200)), Column("price", Numeric(12, 2)),
        Column("currency", String(3)), Column("local_stock", Integer), Column("modified_at", DateTime),
    )  # fmt: skip
    return office


def store_table(erp: MetaData) -> Table:
    """The ERP's stores, beside its items (``tables()`` of ``sandbox.systems`` puts it there)."""
    return Table("stores", erp, Column("code", String(10), primary_key=True), Column("name", String(100)))


def store_items(erp: MetaData) -> Select:
    """The ERP's view ``store_items``: each item once per store, keyed ``<store>:<sku>``."""
    items, stores = erp.tables["items"], erp.tables["stores"]
    ref = (stores.c.code + ":" + items.c.sku).label("item_ref")
    columns = (ref, stores.c.code.label("store"), items.c.sku, items.c.description, items.c.unit_price,
               items.c.currency, items.c.changed_at)  # fmt: skip
    return select(*columns).select_from(items.join(stores, true()))


def events_folder(config: Config) -> Path:
    """The local folder behind the ``pos_events`` system's connection (a ``file://`` URL)."""
    url = file_location(config.systems["pos_events"].connection).url
    if not url.startswith("file://"):
        raise ValueError(f"the sandbox writes terminal exports to a local folder, not {url}")
    return Path(url.removeprefix("file://"))


def build(rows: Any, seed: int, start: date, days: int) -> dict[str, str]:
    """The terminal exports (relative path -> CSV text) and the back office's rows; labels both flows."""
    _price_list(rows)
    return _exports(rows, np.random.default_rng(seed + SEED_OFFSET), datetime.combine(start, datetime.min.time()), days)


def _price_list(rows: Any) -> None:
    """Each store's prices as the ERP was before the demo days: stock control's rows of the ERP's items, where the
    ERP's demo changes did not touch them (what the ERP changed reaches the tills, what stock
    control changed does not); the labels of ``erp_to_stockctl``, once per store.
    """
    for code, name in STORES.items():
        rows.add("erp", "stores", {"code": code, "name": name})
    erp = {row["sku"]: row for row in rows.tables.get(("erp", "items"), []) if row["sku"]}
    stock = [lab for lab in rows.labels if lab["flow"] == "erp_to_stockctl"]
    classes = {lab["key"]: lab["class"] for lab in stock if lab["key"]}
    for store in STORES:
        for row in (r for r in rows.tables.get(("stockctl", "stock_items"), []) if r["sku"] in erp):
            title, price = row["title"], row["price"]
            if classes.get(row["sku"]) in ("overwritten", "mismatched"):  # stock control's own edits
                title, price = erp[row["sku"]]["description"], erp[row["sku"]]["unit_price"]
            rows.add("pos", "store_prices", {"item_ref": f"{store}:{row['sku']}", "store": store, "sku": row["sku"],
                     "title": title, "price": price, "currency": row["currency"], "local_stock": row["qty"],
                     "modified_at": row["last_change"]})  # fmt: skip
        for lab in stock:
            klass = "in_sync" if lab["class"] in ("overwritten", "mismatched") else lab["class"]
            changed = {"class": klass, "outcome": "unchanged", "overdue": False} if klass != lab["class"] else {}
            key = f"{store}:{lab['key']}" if lab["key"] else ""
            rows.labels.append({**lab, "flow": PRICES_FLOW, "entity": "store_price", "key": key, **changed})


def _exports(rows: Any, rng: np.random.Generator, first: datetime, days: int) -> dict[str, str]:
    orders = sorted(row["order_ref"] for row in rows.tables.get(("crm", "deals"), []))
    per_day = max(3, len(orders) // 400)
    files: dict[str, str] = {}
    for day in range(days):
        for terminal in TERMINALS:
            events = [_event(rng, first, day, terminal, n, orders) for n in range(per_day)]
            if (terminal, day) == (SILENT, days - 1):  # offline at ten on the last day, and never back
                gone = first + timedelta(days=day, hours=10)
                events = [e for e in events if e["event_time"] < gone.isoformat()]
                off = {"event_id": f"EV-{terminal}-{gone:%Y%m%d}-OFF", "terminal_id": terminal, "code": "D00"}
                events.append({**off, "event_time": gone.isoformat(), "order_ref": "", "amount": ""})
            files[f"{terminal}/events-{(first + timedelta(days=day)).date()}.csv"] = _csv(events)
    _specials(files, first, orders)
    for path, text in files.items():
        if "(resent)" not in path:
            for event in csv.DictReader(io.StringIO(text)):
                _label(rows, event)
    return files


def _event(rng: np.random.Generator, first: datetime, day: int, terminal: str, n: int, orders: list[str]) -> dict:
    code = list(CODES)[int(rng.integers(len(CODES)))]
    at = first + timedelta(days=day, seconds=int(rng.integers(0, 86400)))
    with_order = CODES[code][1]
    return {"event_id": f"EV-{terminal}-{at:%Y%m%d}-{n:04d}", "terminal_id": terminal,
            "event_time": at.isoformat(), "code": code,
            "order_ref": orders[int(rng.integers(len(orders)))] if with_order else "",
            "amount": f"{rng.integers(100, 20_000) / 100:.2f}" if with_order else ""}  # fmt: skip


def _specials(files: dict[str, str], first: datetime, orders: list[str]) -> None:
    """New codes, an order nobody has, and one file delivered twice."""
    noon = first + timedelta(hours=12)
    extra = [
        {"event_id": "EV-T01-NEW-0001", "terminal_id": "T01", "event_time": noon.isoformat(), "code": "R10",
         "order_ref": orders[0], "amount": "4.50"},
        {"event_id": "EV-T03-NEW-0002", "terminal_id": "T03", "event_time": (noon + timedelta(hours=2)).isoformat(),
         "code": "D02", "order_ref": "", "amount": ""},
        {"event_id": "EV-T02-ORPHAN-0001", "terminal_id": "T02", "event_time": (noon + timedelta(hours=1)).isoformat(),
         "code": "A00", "order_ref": UNKNOWN_ORDER, "amount": "9.99"},
    ]  # fmt: skip
    files[f"T09/events-{first.date()}.csv"] = _csv(extra)
    twice = f"T02/events-{first.date()}.csv"
    files[twice.replace(".csv", " (resent).csv")] = files[twice]


def _csv(events: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(events, key=lambda e: e["event_time"]))
    return out.getvalue()


def _label(rows: Any, event: dict[str, str]) -> None:
    at = datetime.fromisoformat(event["event_time"])
    if event["code"] in NEW_CODES:
        rows.label(EVENTS_FLOW, "pos_event", event["event_id"], "invalid", at, "known_code")
    elif event["order_ref"] == UNKNOWN_ORDER:
        rows.label(EVENTS_FLOW, "pos_event", event["event_id"], "missing", at, PARENT)
    else:
        rows.label(EVENTS_FLOW, "pos_event", event["event_id"], "missing", at)


LATER = "later"  # sandbox folder of the files ``truesync sandbox deliver`` puts in the drop


def plan_deliveries(files: dict[str, str], start: date, days: int, labels: Any) -> dict[str, str]:
    """The files delivered after the demo days (relative path -> CSV text), labelled in ``labels``.

    The last day's file of terminal T01 is delivered again with one plain sale (``A00``) corrected,
    one the SLA already calls overdue where there is one; a day without a plain sale is redelivered as it was.
    """
    first = datetime.combine(start, datetime.min.time())
    last = f"T01/events-{(first + timedelta(days=days - 1)).date()}.csv"
    events = list(csv.DictReader(io.StringIO(files[last])))
    cutoff = (first + timedelta(days=days - 1, hours=18)).isoformat()  # an event the SLA already calls overdue
    plain = [e for e in events if e["code"] == "A00"]
    fixed = next((e for e in plain if e["event_time"] < cutoff), plain[0] if plain else None)
    for event in events:
        corrected = event is fixed
        event["code"] = "C01" if corrected else event["code"]
        at = datetime.fromisoformat(event["event_time"])
        labels.label(EVENTS_FLOW, "pos_event", event["event_id"], "delayed" if corrected else "in_sync", at)
    everyone = (e for text in files.values() for e in csv.DictReader(io.StringIO(text)))
    orders = [e["order_ref"] for e in events if e["order_ref"]] or [e["order_ref"] for e in everyone if e["order_ref"]]
    stuck = [
        {"event_id": f"EV-T03-LATE-{n:04d}", "terminal_id": "T03", "code": "A00", "order_ref": orders[n % len(orders)],
         "event_time": (first + timedelta(hours=13 + n)).isoformat(), "amount": f"{n + 1}.50"}
        for n in range(3)
    ]  # fmt: skip
    for event in stuck:
        labels.label(
            EVENTS_FLOW, "pos_event", event["event_id"], "missing", datetime.fromisoformat(event["event_time"])
        )
    return {last: _csv(events), f"T03/events-{(first + timedelta(days=days)).date()}-late.csv": _csv(stuck)}


def deliver(directory: Path, folder: Path) -> list[str]:
    """Put the later deliveries in the drop (a rewritten file replaces its first version); returns their paths."""
    delivered = sorted((directory / LATER).rglob("*.csv"))
    for path in delivered:
        shutil.copyfile(path, folder / path.relative_to(directory / LATER))
    return [str(p.relative_to(directory / LATER)) for p in delivered]


def write_exports(files: dict[str, str], folder: Path) -> int:
    """(Re)write the terminal exports; returns how many files."""
    shutil.rmtree(folder, ignore_errors=True)
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    return len(files)
