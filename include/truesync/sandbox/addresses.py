"""Addresses typed in the shop or in the CRM: shared between them, and carried to accounting.

A customer's postal and e-mail address are ``shared`` between the web shop and the CRM
(``webshop_to_crm`` and its REST twin, and back ``crm_to_webshop``), and accounting gets
them from both (``webshop_to_accounting``, ``crm_to_accounting``): the newer change wins
everywhere, and a tie waits in the queue. The scenarios change customers the systems knew
before the demo days (history customers the compliance system leaves alone):

* ``crm_address``, ``crm_email``: typed in the CRM only; it reaches the shop and accounting;
* ``shop_newer``: the shop's address changed an hour after the CRM's: the shop's wins;
* ``crm_newer``: the CRM's changed an hour after the shop's: the CRM's wins;
* ``tie``: both changed at the same instant to different addresses: both wait.

Where a record's first result depends on which of two flows runs first, its label lists
each possible result (``Rows.label``'s ``also``):

* Two flows into accounting carry the same fields: the later one finds the earlier one's
  write (``in_sync``), or a tie already there. Which value is newer does not depend on it,
  because a value truesync wrote dates from the change it carried (``docs/design.md``,
  "Echoes").
* A flow that writes the shop or the CRM gives the record a new change time there (its write
  time), after every demo day, so a flow reading that system later in the backfill never
  sees the record (``UNSEEN``); a later window would.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from truesync.sandbox.made import SHARED_TIE, UNSEEN, Made, Rows

SHOP_TO_CRM, CRM_TO_SHOP = "webshop_to_crm", "crm_to_webshop"
SHOP_TO_BOOKS, CRM_TO_BOOKS = "webshop_to_accounting", "crm_to_accounting"
SEED_OFFSET = 6  # payments + 1, quiet drift + 2, POS + 3, accounting + 4, compliance + 5
SCENARIOS = ("crm_address", "crm_email", "shop_newer", "crm_newer", "tie")
SHARE = 0.02  # of the history customers, per scenario (at least one each)
HOUR = timedelta(hours=1)
TIE = ("mismatched", SHARED_TIE)
IN_SYNC, DELAYED, NOT_SEEN = ("in_sync", ""), ("delayed", ""), (UNSEEN, "")


class _Addresses:
    """The edits of each scenario in the rows of the shop, the CRM and accounting, and their labels."""

    def __init__(self, rows: Rows, start: date, days: int, seed: int) -> None:
        self.rows = rows
        self.start, self.days = datetime.combine(start, datetime.min.time()), days
        self.rng = np.random.default_rng(seed + SEED_OFFSET)
        self.shop = {r["ext_id"]: r for r in rows.tables[("webshop", "customers")] if r["ext_id"] is not None}
        self.crm = {r["external_id"]: r for r in rows.tables[("crm", "contacts")]}

    def demo_ts(self) -> datetime:
        """A whole-second time on a demo day, 1:00 to 22:00, so an hour either side stays on that day."""
        day = int(self.rng.integers(self.days))
        return self.start + timedelta(days=day, seconds=int(self.rng.integers(3600, 79_200)))

    def build(self, made: Made) -> None:
        inspected = {r["customer_ref"] for r in self.rows.tables.get(("compliance", "consents"), [])}
        known = [c.key for c in made.customers if c.scenario == "history" and c.key in self.crm]
        free = [key for key in known if key not in inspected]
        per = max(1, int(len(known) * SHARE))
        chosen = [free[int(i)] for i in sorted(self.rng.choice(len(free), per * len(SCENARIOS), replace=False))]
        for i, key in enumerate(chosen):
            getattr(self, f"_{SCENARIOS[i % len(SCENARIOS)]}")(key, self.demo_ts())
        self._other_crm_edits(set(chosen))

    def _other_crm_edits(self, chosen: set[str]) -> None:
        """A contact the other scenarios edit in the CRM on a demo day (a phone, a name, a compliance
        note) keeps its addresses: in sync, or unseen when a flow into the CRM wrote it first."""
        end = self.start + timedelta(days=self.days)
        for key, contact in self.crm.items():
            if key not in chosen and self.start <= contact["modified_at"] < end:
                for flow in (CRM_TO_SHOP, CRM_TO_BOOKS):
                    self.rows.label(flow, "contact", key, "in_sync", contact["modified_at"], also=(NOT_SEEN,))

    def _new_address(self, key: str) -> str:
        return f"{int(self.rng.integers(1, 400))} {self.crm[key]['street_address']}"

    def _crm_edit(self, key: str, ts: datetime, **values: Any) -> None:
        self.crm[key].update(values, modified_at=ts)

    def _shop_edit(self, key: str, ts: datetime, address: str) -> None:
        self.shop[key].update(address=address, updated_at=ts)

    def _crm_address(self, key: str, ts: datetime) -> None:
        self._crm_edit(key, ts, street_address=self._new_address(key))
        self._crm_reaches_both(key, ts)

    def _crm_email(self, key: str, ts: datetime) -> None:
        self._crm_edit(key, ts, email=f"{key.lower()}@new.example.com")
        self._crm_reaches_both(key, ts)

    def _crm_reaches_both(self, key: str, ts: datetime) -> None:
        """Only the CRM changed: both flows out of it deliver the change, and nothing else reads it."""
        self.rows.label(CRM_TO_SHOP, "contact", key, "delayed", ts)
        self.rows.label(CRM_TO_BOOKS, "contact", key, "delayed", ts)

    def _shop_newer(self, key: str, ts: datetime) -> None:
        """The shop's later address wins; the flows out of the CRM may run after the shop's reached it."""
        self._crm_edit(key, ts - HOUR, street_address=self._new_address(key))
        self._shop_edit(key, ts, self._new_address(key))
        self.rows.label(SHOP_TO_CRM, "customer", key, "delayed", ts)
        self.rows.label(SHOP_TO_BOOKS, "customer", key, "delayed", ts)
        self.rows.label(CRM_TO_SHOP, "contact", key, "in_sync", ts - HOUR, also=(NOT_SEEN,))
        self.rows.label(CRM_TO_BOOKS, "contact", key, "delayed", ts - HOUR, also=(IN_SYNC, NOT_SEEN))

    def _crm_newer(self, key: str, ts: datetime) -> None:
        """The CRM's later address wins; the flows out of the shop may run after the CRM's reached it."""
        self._shop_edit(key, ts, self._new_address(key))
        self._crm_edit(key, ts + HOUR, street_address=self._new_address(key))
        self.rows.label(SHOP_TO_CRM, "customer", key, "in_sync", ts, also=(NOT_SEEN,))
        self.rows.label(SHOP_TO_BOOKS, "customer", key, "delayed", ts, also=(IN_SYNC, NOT_SEEN))
        self.rows.label(CRM_TO_SHOP, "contact", key, "delayed", ts + HOUR)
        self.rows.label(CRM_TO_BOOKS, "contact", key, "delayed", ts + HOUR)

    def _tie(self, key: str, ts: datetime) -> None:
        """Both changed at one instant: the shop and the CRM keep theirs and wait; accounting gets
        the first to arrive, and the second flow into it waits too."""
        self._shop_edit(key, ts, self._new_address(key))
        self._crm_edit(key, ts, street_address=self._new_address(key))
        self.rows.label(SHOP_TO_CRM, "customer", key, "mismatched", ts, SHARED_TIE)
        self.rows.label(CRM_TO_SHOP, "contact", key, "mismatched", ts, SHARED_TIE)
        for flow, entity in ((SHOP_TO_BOOKS, "customer"), (CRM_TO_BOOKS, "contact")):
            self.rows.label(flow, entity, key, "delayed", ts, also=(TIE,))


def build(rows: Rows, made: Made, start: date, days: int, seed: int) -> None:
    """Edit the addresses of some history customers in the shop and the CRM, and label every flow that sees them."""
    _Addresses(rows, start, days, seed).build(made)
