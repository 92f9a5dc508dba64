"""The sandbox's compliance system: customers' consent and inspection statuses, assets' inspections, notes
(flow ``compliance_to_crm``).

In regulated work a customer's consent and an inspection result are decided in a compliance
system, not in the CRM, yet the CRM shows them and people edit them there. The compliance
system (system ``compliance``) keeps one record per customer (table ``consents``) and one per
installed asset (table ``inspections``: the asset's last inspection), each with its change
time. The flow ``compliance_to_crm`` writes the entity ``compliance_status`` onto the CRM's
contacts and ``asset_inspection`` onto the CRM's assets (creating an asset the CRM lacks,
under its contact): the statuses and results are the compliance system's (an edit in the CRM
is overwritten, and the audit trail keeps it), the notes are ``shared`` (the side that changed
last keeps them; equal change times with different notes wait in the queue).

Records exist for customers the CRM held before the demo days (a record for any other
customer waits for its contact, ``parent_exists``). During the demo days some change
(``SCENARIOS``, and ``ASSET_SCENARIOS`` with a new asset), and labels say what the first run
that sees each must report. One is the late update: a note changed in the compliance system
that reaches the CRM after someone wrote a newer note there, which it must not replace.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table

from truesync.sandbox.made import IN_SET, NOT_NULL, PARENT, SHARED_TIE, Made, Rows

FLOW = "compliance_to_crm"
ENTITY = "compliance_status"
ASSET_ENTITY = "asset_inspection"
SEED_OFFSET = 5  # payments seed + 1, quiet drift + 2, POS + 3, accounting + 4
CONSENT = {"granted": "G", "withdrawn": "W", "pending": "P"}
INSPECTION = {"passed": "OK", "failed": "NOK", "due": "DUE"}
RECORD_SHARE = 0.3  # of the customers the CRM holds before the demo days
# scenario -> (share of the records, class and check of the first run that sees it)
SCENARIOS = {
    "in_sync": (0.1, "in_sync", ""),
    "delayed": (0.1, "delayed", ""),  # consent withdrawn in the compliance system
    "notes_newer": (0.1, "delayed", ""),  # a note changed there, the CRM's older
    "overwritten": (0.1, "overwritten", ""),  # consent edited in the CRM afterwards: restored
    "late_older": (0.1, "in_sync", ""),  # a note changed there, then a newer one in the CRM: kept
    "tie": (0.05, "mismatched", SHARED_TIE),  # both notes changed at the same instant
    "unknown_code": (0.05, "invalid", IN_SET),
}
# an asset's inspection: the same, the result for the consent; and an asset the CRM does not hold yet
ASSET_SCENARIOS = {**SCENARIOS, "missing": (0.1, "missing", "")}
ASSET_SHARE = 0.2  # of the customers the CRM holds before the demo days: one installed asset each
UNKNOWN_CUSTOMER = "C9999999"  # a record for a customer nobody has: it waits for its contact
UNKNOWN_ASSET = "A-999999"  # an asset of that customer: it waits too
NOTES = ("ID checked in branch", "Proof of address on file", "Marketing by e-mail only", "Visit due Q1")


def tables() -> MetaData:
    """The compliance system's tables."""
    compliance = MetaData()
    Table(
        "consents", compliance,
        Column("row_id", Integer, primary_key=True, autoincrement=True),
        Column("customer_ref", String(40)), Column("consent_code", String(2)),
        Column("inspection_result", String(4)), Column("notes", String(200)),
        Column("changed_at", DateTime, nullable=False),
        Index("ix_consents_cursor", "changed_at", "customer_ref"), Index("ix_consents_key", "customer_ref"),
    )  # fmt: skip
    Table(
        "inspections", compliance,
        Column("row_id", Integer, primary_key=True, autoincrement=True),
        Column("asset_tag", String(20)), Column("customer_ref", String(40)), Column("result_code", String(4)),
        Column("notes", String(200)), Column("changed_at", DateTime, nullable=False),
        Index("ix_inspections_cursor", "changed_at", "asset_tag"), Index("ix_inspections_key", "asset_tag"),
    )  # fmt: skip
    return compliance


def crm_assets(crm: MetaData) -> None:
    """The CRM's assets: each installed at a contact, with its last inspection as the CRM shows it."""
    Table(
        "assets", crm,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("asset_tag", String(20), nullable=False, unique=True), Column("contact_ref", String(40)),
        Column("inspection", String(12)), Column("inspection_notes", String(200)), Column("modified_at", DateTime),
    )  # fmt: skip


def crm_columns() -> list[Column]:
    """The columns of the CRM's contacts that the compliance flow writes."""
    return [Column("consent", String(12)), Column("inspection", String(12)), Column("compliance_notes", String(200))]


class _Records:
    """The compliance system's rows, the CRM's statuses and the flow's labels."""

    def __init__(self, rows: Rows, contacts: dict[str, dict[str, Any]], start: date, days: int, seed: int) -> None:
        self.rows, self.contacts, self.days = rows, contacts, days
        self.start = datetime.combine(start, datetime.min.time())
        self.rng = np.random.default_rng(seed + SEED_OFFSET)

    def demo_ts(self) -> datetime:
        """A whole-second time on a demo day, before 22:00 (a CRM edit an hour later stays on that day)."""
        return self.start + timedelta(days=int(self.rng.integers(self.days)), seconds=int(self.rng.integers(79_200)))

    def build(self, made: Made) -> None:
        known = [c for c in made.customers if c.scenario == "history" and c.key in self.contacts]
        chosen = [known[int(i)] for i in sorted(self.rng.choice(len(known), int(len(known) * RECORD_SHARE), False))]
        for customer, scenario in zip(chosen, self._plan(len(chosen), SCENARIOS), strict=True):
            self._record(customer.key, scenario, customer.old_ts)
        self._record(UNKNOWN_CUSTOMER, "orphan", None)
        self._record(None, "null_key", None)
        owners = [known[int(i)] for i in sorted(self.rng.choice(len(known), int(len(known) * ASSET_SHARE), False))]
        for n, (owner, scenario) in enumerate(zip(owners, self._plan(len(owners), ASSET_SCENARIOS), strict=True)):
            self._inspection(f"A-{n:06d}", owner.key, scenario, owner.old_ts)
        self._inspection(UNKNOWN_ASSET, UNKNOWN_CUSTOMER, "orphan", None)

    def _plan(self, n: int, scenarios: dict[str, tuple[float, str, str]]) -> list[str]:
        plan = [s for s, (share, _, _) in scenarios.items() for _ in range(max(1, int(n * share)))]
        plan += ["history"] * max(0, n - len(plan))
        self.rng.shuffle(plan)  # type: ignore[arg-type]
        return plan[:n]

    @staticmethod
    def _versions(
        scenario: str, base: dict[str, Any], owned: tuple[str, str, str], ts: datetime
    ) -> tuple[dict[str, Any], dict[str, Any], datetime | None]:
        """The source's values, the CRM's and the CRM's change time (None: as before) of one record.

        ``owned`` is (field, its new value at the source, its value edited in the CRM).
        """
        field, changed, edited = owned
        src, crm, crm_ts = dict(base), dict(base), None
        if scenario == "delayed":
            src[field] = changed
        elif scenario in ("notes_newer", "late_older", "tie"):
            src["notes"] = base["notes"] + " (updated)"
            if scenario != "notes_newer":  # the CRM's note: an hour later, or at the very same instant
                later = timedelta(hours=1) if scenario == "late_older" else timedelta(0)
                crm["notes"], crm_ts = base["notes"] + " (edited in the CRM)", ts + later
        elif scenario == "overwritten":
            crm[field], crm_ts = edited, ts + timedelta(hours=1)
        return src, crm, crm_ts

    def _record(self, key: str | None, scenario: str, old_ts: datetime | None) -> None:
        consent, inspection = str(self.rng.choice(["granted", "pending"])), str(self.rng.choice(["passed", "due"]))
        base = {"consent": consent, "inspection": inspection, "notes": str(self.rng.choice(NOTES))}
        ts = old_ts if scenario == "history" and old_ts else self.demo_ts()
        edited = "granted" if consent != "granted" else "withdrawn"
        src, crm, crm_ts = self._versions(scenario, base, ("consent", "withdrawn", edited), ts)
        code = "X" if scenario == "unknown_code" else CONSENT[src["consent"]]
        record = {"customer_ref": key, "consent_code": code, "inspection_result": INSPECTION[src["inspection"]],
                  "notes": src["notes"], "changed_at": ts}  # fmt: skip
        self.rows.add("compliance", "consents", record)
        if key in self.contacts:
            contact = self.contacts[key]
            contact.update(consent=crm["consent"], inspection=crm["inspection"], compliance_notes=crm["notes"])
            if crm_ts is not None:
                contact["modified_at"] = crm_ts
        self._label(ENTITY, key, scenario, ts)

    def _inspection(self, tag: str, owner: str, scenario: str, old_ts: datetime | None) -> None:
        result = str(self.rng.choice(["passed", "due"]))
        base = {"result": result, "notes": str(self.rng.choice(NOTES))}
        ts = old_ts if scenario == "history" and old_ts else self.demo_ts()
        edited = "due" if result == "passed" else "passed"
        src, crm, crm_ts = self._versions(scenario, base, ("result", "failed", edited), ts)
        code = "XX" if scenario == "unknown_code" else INSPECTION[src["result"]]
        self.rows.add("compliance", "inspections", {"asset_tag": tag, "customer_ref": owner, "result_code": code,
                      "notes": src["notes"], "changed_at": ts})  # fmt: skip
        if scenario not in ("missing", "orphan"):
            self.rows.add("crm", "assets", {"asset_tag": tag, "contact_ref": owner, "inspection": crm["result"],
                          "inspection_notes": crm["notes"], "modified_at": crm_ts or old_ts})  # fmt: skip
        self._label(ASSET_ENTITY, tag, scenario, ts)

    def _label(self, entity: str, key: str | None, scenario: str, ts: datetime) -> None:
        if scenario == "history":
            return
        if scenario == "orphan":
            self.rows.label(FLOW, entity, key, "missing", ts, PARENT)
        elif scenario == "null_key":
            self.rows.label(FLOW, entity, None, "invalid", ts, NOT_NULL)
        else:
            _, klass, check = ASSET_SCENARIOS[scenario]  # a status's scenarios are among them
            self.rows.label(FLOW, entity, key, klass, ts, check)


def build(rows: Rows, made: Made, start: date, days: int, seed: int) -> None:
    """The compliance system's records, the CRM contacts' statuses and assets, and the labels of ``compliance_to_crm``.

    Every CRM contact gets the three columns (null where the compliance system has no record).
    """
    contacts = {}
    for contact in rows.tables.get(("crm", "contacts"), []):
        contact.update(consent=None, inspection=None, compliance_notes=None)
        contacts[contact["external_id"]] = contact
    _Records(rows, contacts, start, days, seed).build(made)
