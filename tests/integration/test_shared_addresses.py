"""A new address typed in the shop or in the CRM reaches the other two systems, the newest first, with no echo.

Four flows carry a customer's postal and e-mail address (``sandbox.addresses``): the shop's and
the CRM's share them (``webshop_to_crm``, ``crm_to_webshop``), and accounting gets them from both
(``webshop_to_accounting``, ``crm_to_accounting``). The CRM and accounting run on SQLite,
PostgreSQL or MariaDB (beside PostgreSQL the store is on PostgreSQL too); the shop stays on SQLite,
whose customers table has no unique key (it holds a duplicate on purpose), so the flow into it
writes by update-or-insert. The order the flows run in differs by database: the CRM's flows
first, the shop's first, or day by day in turns. ``labels.csv`` says what each first run reports
whatever the order; after the demo days the three systems agree on both addresses, each as the
side that changed it last left it; and a run over everything truesync wrote since (its own
writes, read back by the flow the other way) writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sandbox_demo import DEMO_START, Demo, assert_conserved, open_demo
from shared_setup import put_on_server
from sqlalchemy import update

from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.sandbox import DEMO_DAYS
from truesync.sandbox.addresses import CRM_TO_BOOKS, CRM_TO_SHOP, SHOP_TO_BOOKS, SHOP_TO_CRM
from truesync.sandbox.groundtruth import differences, first_results
from truesync.store import queue
from truesync.store.core import utcnow

FLOWS = (SHOP_TO_CRM, CRM_TO_SHOP, SHOP_TO_BOOKS, CRM_TO_BOOKS)
ENTITIES = {SHOP_TO_CRM: "customer", CRM_TO_SHOP: "contact", SHOP_TO_BOOKS: "customer", CRM_TO_BOOKS: "contact"}
CRM_FIRST = (CRM_TO_SHOP, CRM_TO_BOOKS, SHOP_TO_CRM, SHOP_TO_BOOKS)
ORDER = {"sqlite": "crm-first", "postgresql": "shop-first", "mariadb": "day-by-day"}


@pytest.fixture(params=list(ORDER))
def mesh(request: pytest.FixtureRequest, state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """The sandbox at scale 200, the CRM and accounting on the database of the parameter, after the demo days."""
    for system in ("crm", "accounting"):
        put_on_server(request, monkeypatch, system)
    handle = open_demo(state)
    handle.before = _addresses(handle)  # type: ignore[attr-defined]
    handle.reports = _demo_days(handle, ORDER[request.param])  # type: ignore[attr-defined]
    yield handle
    handle.close()


def _demo_days(demo: Demo, order: str) -> list[dict[str, Any]]:
    if order == "day-by-day":
        return [demo.run(flow, day) for day in range(DEMO_DAYS) for flow in (FLOWS if day % 2 else CRM_FIRST)]
    flows = CRM_FIRST if order == "crm-first" else FLOWS
    return [demo.run(flow, day) for flow in flows for day in range(DEMO_DAYS)]


def _addresses(demo: Demo) -> dict[str, dict[str, tuple[Any, ...]]]:
    """Per system, key -> (e-mail, postal address, change time)."""
    columns = {
        "shop": ("webshop", "customers", "ext_id", "email_address", "address", "updated_at"),
        "crm": ("crm", "contacts", "external_id", "email", "street_address", "modified_at"),
        "books": ("accounting", "accounts", "customer_ref", "email", "postal_address", "modified_at"),
    }
    return {
        side: {r[key]: (r[email], r[address], r[ts]) for r in demo.rows(system, table)}
        for side, (system, table, key, email, address, ts) in columns.items()
    }


def _held(demo: Demo) -> set[str]:
    return {e["key"] for f in FLOWS for e in demo.exceptions(f) if e["status"] in queue.ACTIVE}


def test_addresses_reach_every_system_newest_first_and_never_echo(mesh: Demo, request: pytest.FixtureRequest) -> None:
    """One sandbox per database for the checks (building one costs ~15 s); the echo on SQLite."""
    _classified_as_labelled_and_agreed(mesh)
    _reading_back_what_truesync_wrote_writes_nothing(mesh)
    if request.node.callspec.params["mesh"] == "sqlite":
        _an_edit_older_than_truesyncs_write_is_not_overwritten_by_its_echo(mesh)


def _classified_as_labelled_and_agreed(mesh: Demo) -> None:
    """First runs report as labelled; then the shop, the CRM and accounting hold, for every
    customer the queue does not hold, the addresses of whichever of shop and CRM changed last."""
    labels = mesh.labels()
    for flow in FLOWS:
        wrong = differences(labels[labels["flow"] == flow], first_results(mesh.store, flow))
        assert wrong.empty, f"{flow} differs from the ground truth:\n{wrong.to_string()}"
    for report in mesh.reports:  # type: ignore[attr-defined]
        assert_conserved(mesh, report)
    before, after, held = mesh.before, _addresses(mesh), _held(mesh)  # type: ignore[attr-defined]
    ties = set(labels.loc[labels["flow"].isin(FLOWS) & (labels["check"] == "shared_field_tie"), "key"])
    assert ties and ties <= held, "a tie waits in the queue"
    agreed = {"crm": 0, "shop": 0}
    for key, (email, address, crm_ts) in before["crm"].items():
        if key in held or key not in before["shop"] or key not in before["books"]:
            continue
        shop_email, shop_address, shop_ts = before["shop"][key]
        if (email, address) == (shop_email, shop_address):
            continue
        newer = "crm" if crm_ts > shop_ts else "shop"
        want = (email, address) if newer == "crm" else (shop_email, shop_address)
        for system in ("shop", "crm", "books"):
            assert after[system][key][:2] == want, (key, system, newer)
        agreed[newer] += 1
    assert agreed["crm"] >= 6 and agreed["shop"] >= 6, agreed


def _reading_back_what_truesync_wrote_writes_nothing(mesh: Demo) -> None:
    """Every write since the demo days lies in this window: each flow reads the others' writes
    back (the CRM's contacts the shop's flow wrote, and so on) and finds nothing to carry; a
    rerun of the demo days writes nothing either."""
    since = Window(DEMO_START + timedelta(days=DEMO_DAYS), utcnow() + timedelta(minutes=1))
    read = dict.fromkeys(FLOWS, 0)
    for turn, flow in enumerate((*FLOWS, *FLOWS)):
        totals = run_flow(mesh.config, mesh.store, flow, f"{flow}:since-{turn}", since)["totals"]
        assert (totals["created"], totals["updated"]) == (0, 0), (flow, totals)
        read[flow] = max(read[flow], totals["extracted"])
    assert read[CRM_TO_SHOP] > 10 and read[SHOP_TO_CRM] > 5, read
    again = [mesh.run(flow, day, tag="again") for flow in FLOWS for day in range(DEMO_DAYS)]
    assert all((r["totals"]["created"], r["totals"]["updated"]) == (0, 0) for r in again), "a rerun writes nothing"


def _an_edit_older_than_truesyncs_write_is_not_overwritten_by_its_echo(mesh: Demo) -> None:
    """The echo: the shop's flow wrote a customer's address into the CRM; a minute before that
    write, someone typed a newer address into the shop. The CRM's record changed later than the
    shop's, but its address is the one truesync carried from the shop: by the ledger it dates from
    that older change, so the flow back keeps the shop's edit, and the shop's flow carries it on."""
    key, wrote = _carried_into_crm(mesh)
    typed = f"{key} Echo Lane 1"
    customers = mesh.table("webshop", "customers")
    with mesh.engine("webshop").begin() as conn:
        edit = update(customers).where(customers.c.ext_id == key)
        conn.execute(edit.values(address=typed, updated_at=wrote - timedelta(minutes=1)))
    window = Window(wrote - timedelta(minutes=2), utcnow() + timedelta(minutes=1))
    back = run_flow(mesh.config, mesh.store, CRM_TO_SHOP, f"{CRM_TO_SHOP}:echo", window)["totals"]
    assert back["extracted"] >= 1 and (back["created"], back["updated"]) == (0, 0), back
    assert mesh.by_key("webshop", "customers", "ext_id")[key]["address"] == typed
    forth = run_flow(mesh.config, mesh.store, SHOP_TO_CRM, f"{SHOP_TO_CRM}:echo", window)["totals"]
    assert forth["updated"] >= 1, forth
    assert mesh.by_key("crm", "contacts", "external_id")[key]["street_address"] == typed


def _carried_into_crm(demo: Demo) -> tuple[str, datetime]:
    """A customer whose address the shop's flow carried into the CRM, and the time it wrote it."""
    before, after = demo.before["crm"], _addresses(demo)["crm"]  # type: ignore[attr-defined]
    moved = sorted(k for k in before if before[k][1] != after[k][1] and k not in _held(demo))
    assert moved, "the shop's flow changed addresses in the CRM"
    return moved[0], after[moved[0]][2]
