"""Seed data of the sandbox REST services, and their ground truth.

The REST CRM holds the same contacts and deals as the SQL CRM of the sandbox, so the
flow ``webshop_to_crm_api`` meets exactly the drift the SQL flow meets, and its labels are
the SQL flow's labels under its own name. The payment gateway's transactions pay deals
that no other scenario touches, one labelled reconciliation case each; accounting's books
(invoices and finance ledger) hold the same deals. Seeds are JSON
files beside the SQLite systems, read by ``truesync sandbox serve``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from truesync.sandbox.api import ServerThread, crm_app, payments_app, seed
from truesync.sandbox.made import IN_SET, NOT_NULL, PARENT
from truesync.sandbox.systems import Rows

SQL_TWIN = {"webshop_to_crm_api": "webshop_to_crm"}  # REST flow -> the SQL flow whose ground truth it shares
CRM_API, PAYMENTS = "crm_api", "payments"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value if value is None or isinstance(value, str | int | bool) else str(value)


def _as_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _json_value(v) for k, v in row.items()} for row in rows]


def invoice_of(order_ref: str) -> str:
    return f"INV-{order_ref}"


def crm_seed(rows: Rows, payments: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The REST CRM's collections: the SQL CRM's contacts and deals (each with its invoice), and payments."""
    deals = [{**deal, "invoice_ref": invoice_of(deal["order_ref"])} for deal in rows.tables.get(("crm", "deals"), [])]
    return {
        "contacts": _as_json(rows.tables.get(("crm", "contacts"), [])),
        "deals": _as_json(deals),
        "payments": _as_json(payments),
    }


PAYMENT_FLOW = "payments_to_crm_api"
PAYMENT_SCENARIOS = ("history", "in_sync", "missing", "delayed", "refund", "refund_open", "cross_ref", "failed",
                     "capture_refund", "partial_refund", "no_deal", "finance_closed", "finance_ref")  # fmt: skip
KINDS = {"payment": "charge", "refund": "refund"}
STATES = {"authorised": "AUTH", "captured": "CAPT", "refunded": "RFND", "failed": "FAIL"}


@dataclass
class Payments:
    """Gateway transactions, the CRM's payment records, accounting's finance ledger and invoices."""

    gateway: list[dict[str, Any]] = field(default_factory=list)
    crm: list[dict[str, Any]] = field(default_factory=list)
    books: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    _invoice_by_ref: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def add(self, key: str | None, deal: dict[str, Any], kind: str, state: str, ts: datetime, **override: Any) -> None:
        txn = {"txn_id": key, "type": KINDS[kind], "status": STATES.get(state, state), "amount": str(deal["amount"]),
               "currency": deal["currency"], "invoice_id": invoice_of(deal["order_ref"]),
               "order_id": deal["order_ref"], "customer_id": deal["contact_ref"], "updated_at": ts}  # fmt: skip
        self.gateway.append({**txn, **override})

    def record(self, key: str, deal: dict[str, Any], kind: str, state: str, ts: datetime, **override: Any) -> None:
        """The CRM recorded the transaction, and accounting booked it the same way."""
        self.crm.append(
            override
            | {
                "payment_ref": key,
                "deal_ref": deal["order_ref"],
                "invoice_ref": invoice_of(deal["order_ref"]),
                "contact_ref": deal["contact_ref"],
                "kind": kind,
                "state": state,
                "amount": str(deal["amount"]),
                "currency": deal["currency"],
                "modified_at": ts,
            }
            | override
        )
        self.book(key, deal, kind, state, ts, **override)

    def book(self, key: str, deal: dict[str, Any], kind: str, state: str, ts: datetime, **override: Any) -> None:
        """Accounting booked the transaction in its finance ledger, on the deal's invoice."""
        entry = {"entry_ref": key, "invoice_ref": invoice_of(deal["order_ref"]), "order_ref": deal["order_ref"],
                 "customer_ref": override.get("contact_ref", deal["contact_ref"]), "kind": kind, "state": state,
                 "amount": override.get("amount", deal["amount"]), "currency": deal["currency"],
                 "booked_at": ts}  # fmt: skip
        self.books.append(entry)

    def invoice(self, deal: dict[str, Any], ts: datetime, **override: Any) -> None:
        """Accounting's invoice of the deal's sales order."""
        invoice = {"invoice_ref": invoice_of(deal["order_ref"]), "order_ref": deal["order_ref"],
                   "customer_ref": deal["contact_ref"], "total": deal["amount"], "modified_at": ts}  # fmt: skip
        invoice |= override
        self.invoices.append(invoice)
        self._invoice_by_ref.setdefault(invoice["invoice_ref"], invoice)

    def invoice_named(self, ref: str) -> dict[str, Any]:
        """The first invoice made under ``ref`` (a lookup, not a scan: the sandbox makes one per deal)."""
        return self._invoice_by_ref[ref]

    def to_accounting(self, rows: Rows) -> None:
        """Accounting's invoices and finance ledger among the sandbox's rows."""
        for invoice in self.invoices:
            rows.add("accounting", "invoices", invoice)
        for entry in self.books:
            rows.add("accounting", "finance_entries", entry)


def build_payments(rows: Rows, seed: int, start: date, days: int) -> Payments:
    """Payments on the deals no other scenario touches, one labelled case per scenario and deal.

    ``refund`` is a clean refund of a paid deal (created; the CRM's balance follows);
    ``capture_refund`` captures and refunds an unpaid deal in one window (both created);
    ``partial_refund`` refunds a paid deal in two halves, the first already in the CRM but
    stale (updated; judged without its own effect), the second new (created);
    ``refund_open`` refunds a deal the CRM still shows unpaid, ``cross_ref`` names one deal's
    invoice and another deal's order: both are ``mismatched`` and go to the exception queue;
    ``no_deal`` pays a deal the CRM does not have yet: it waits for it (``parent_exists``).

    Accounting invoices every one of these deals, and its finance ledger books what the CRM
    recorded, except: ``finance_closed`` refunds a deal paid by bank transfer, which only
    accounting booked; accounting booked the refund too, so it is closed in finance while the
    CRM still shows the deal open. Accounting owns the balance (the flow's ``finance``
    rule), so the refund is created and the deal's balance set to accounting's
    (``finance_balance``). ``finance_ref`` pays a deal whose invoice accounting made out for
    another sales order: ``mismatched``, ``reference_match``.
    """
    rng = np.random.default_rng(seed + 1)
    first = datetime.combine(start, datetime.min.time())
    touched = {lab["key"] for lab in rows.labels if lab["entity"] == "order"}
    invoiced = {o["order_ref"] for o in rows.tables.get(("accounting", "sales_orders"), [])}
    deals = [
        d for d in rows.tables.get(("crm", "deals"), []) if d["order_ref"] not in touched and d["order_ref"] in invoiced
    ]
    per = max(1, len(deals) // (2 * len(PAYMENT_SCENARIOS)))
    plan = [s for s in PAYMENT_SCENARIOS for _ in range(per)]
    out = Payments()
    history = first - timedelta(days=20)
    for deal in deals:
        out.invoice(deal, history)
    for i, (scenario, deal) in enumerate(zip(plan, deals, strict=False)):
        ts = first + timedelta(days=int(rng.integers(days)), seconds=int(rng.integers(0, 86400)))
        key = f"TX{i:05d}"
        _payment_case(out, rows, scenario, key, deal, deals[(i + 1) % len(deals)], ts, history)
    bad_deal, ts = deals[0], first + timedelta(hours=12)
    out.add(None, bad_deal, "payment", "captured", ts)
    rows.label(PAYMENT_FLOW, "payment", None, "invalid", ts, NOT_NULL)
    out.add("TX-BAD-STATE", bad_deal, "payment", "CHBK", ts)
    rows.label(PAYMENT_FLOW, "payment", "TX-BAD-STATE", "invalid", ts, IN_SET)
    out.to_accounting(rows)
    return out


def _payment_case(
    out: Payments, rows: Rows, scenario: str, key: str, deal: dict[str, Any], other: dict[str, Any],
    ts: datetime, history: datetime,
) -> None:  # fmt: skip
    label = rows.label
    if scenario in ("history", "in_sync"):
        when = history if scenario == "history" else ts
        out.add(key, deal, "payment", "captured", when)
        out.record(key, deal, "payment", "captured", when)
        if scenario == "in_sync":
            label(PAYMENT_FLOW, "payment", key, "in_sync", ts)
    elif scenario in ("missing", "failed"):
        out.add(key, deal, "payment", "captured" if scenario == "missing" else "failed", ts)
        label(PAYMENT_FLOW, "payment", key, "missing", ts)
    elif scenario == "delayed":
        out.add(key, deal, "payment", "captured", ts)
        out.record(key, deal, "payment", "authorised", ts - timedelta(hours=1))
        label(PAYMENT_FLOW, "payment", key, "delayed", ts)
    elif scenario == "refund":
        out.add(f"P{key}", deal, "payment", "captured", history)
        out.record(f"P{key}", deal, "payment", "captured", history)
        out.add(key, deal, "refund", "refunded", ts)
        label(PAYMENT_FLOW, "payment", key, "missing", ts)
    elif scenario == "capture_refund":
        morning = datetime.combine(ts.date(), time(9))  # one window, so one chunk
        out.add(f"P{key}", deal, "payment", "captured", morning)
        out.add(key, deal, "refund", "refunded", morning + timedelta(hours=1))
        label(PAYMENT_FLOW, "payment", f"P{key}", "missing", morning)
        label(PAYMENT_FLOW, "payment", key, "missing", morning + timedelta(hours=1))
    elif scenario == "partial_refund":
        half = (Decimal(str(deal["amount"])) / 2).quantize(Decimal("0.01"))
        rest = str(Decimal(str(deal["amount"])) - half)
        out.add(f"P{key}", deal, "payment", "captured", history)
        out.record(f"P{key}", deal, "payment", "captured", history)
        out.add(f"A{key}", deal, "refund", "refunded", ts, amount=str(half))
        out.record(f"A{key}", deal, "refund", "refunded", history, amount=str(half), contact_ref=None)
        label(PAYMENT_FLOW, "payment", f"A{key}", "delayed", ts)
        out.add(key, deal, "refund", "refunded", ts, amount=rest)
        label(PAYMENT_FLOW, "payment", key, "missing", ts)
    elif scenario == "no_deal":
        out.add(key, {**deal, "order_ref": f"NEW-{deal['order_ref']}"}, "payment", "captured", ts)
        label(PAYMENT_FLOW, "payment", key, "missing", ts, PARENT)
    elif scenario == "finance_closed":  # paid by bank transfer: only accounting booked it
        out.book(f"BANK-{key}", deal, "payment", "captured", history)
        out.add(key, deal, "refund", "refunded", ts)
        out.book(key, deal, "refund", "refunded", ts)
        label(PAYMENT_FLOW, "payment", key, "missing", ts, "finance_balance", outcome="created")
    elif scenario == "finance_ref":
        out.add(key, deal, "payment", "captured", ts)
        mine = invoice_of(deal["order_ref"])
        invoice = out.invoice_named(mine)
        invoice["order_ref"] = other["order_ref"]
        label(PAYMENT_FLOW, "payment", key, "mismatched", ts, "reference_match")
    elif scenario == "refund_open":
        out.add(key, deal, "refund", "refunded", ts)
        label(PAYMENT_FLOW, "payment", key, "mismatched", ts, "open_balance")
    else:  # cross_ref: this deal's invoice, another deal's order
        out.add(key, deal, "payment", "captured", ts, order_id=other["order_ref"])
        label(PAYMENT_FLOW, "payment", key, "mismatched", ts, "reference_match")


def add_labels(rows: Rows) -> None:
    """Label the REST flows: each one is its SQL twin's ground truth under its own name."""
    for flow, twin in SQL_TWIN.items():
        rows.labels += [{**label, "flow": flow} for label in rows.labels if label["flow"] == twin]


def seed_path(directory: Path, system: str) -> Path:
    return directory / f"{system}.json"


def write_seeds(rows: Rows, payments: Payments, directory: Path) -> dict[str, int]:
    """Write each REST service's seed file; returns records per service.collection."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = {CRM_API: crm_seed(rows, payments.crm), PAYMENTS: {"transactions": _as_json(payments.gateway)}}
    counts: dict[str, int] = {}
    for system, data in seeds.items():
        seed_path(directory, system).write_text(json.dumps(data))
        counts.update({f"{system}.{name}": len(items) for name, items in data.items()})
    return counts


def read_seed(directory: Path, system: str) -> dict[str, list[dict[str, Any]]]:
    path = seed_path(directory, system)
    if not path.is_file():
        raise LookupError(f"no seed for '{system}' at {path}: run 'truesync sandbox init' first")
    return json.loads(path.read_text())


def serve(directory: Path, host: str, crm_port: int, payments_port: int, token: str) -> dict[str, ServerThread]:
    """Start both sandbox services, seeded from ``directory``, each in a background thread."""
    apps = {CRM_API: (crm_app(token), crm_port), PAYMENTS: (payments_app(token), payments_port)}
    servers: dict[str, ServerThread] = {}
    for system, (app, port) in apps.items():
        seed(app, read_seed(directory, system))
        servers[system] = ServerThread(app, host, port).start()
    return servers
