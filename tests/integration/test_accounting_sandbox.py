"""One order into accounting: the web shop's customers, orders and order lines, each parent first.

The sandbox's accounting system (``sandbox.accounting``) runs on SQLite, PostgreSQL or MariaDB
(beside PostgreSQL the store is on PostgreSQL too). Its tables have foreign keys, so a sales
order written before its account, or a line before its order, would be refused by the
database itself. ``labels.csv`` is the ground truth of the first runs over the demo days.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sandbox_demo import Demo, assert_conserved, open_demo
from shared_setup import put_on_server
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from truesync.sandbox import DEMO_DAYS
from truesync.sandbox.accounting import FLOW
from truesync.sandbox.groundtruth import differences, drift, first_results, held_keys
from truesync.store import staging
from truesync.store.schema import ledger

PARENTS = {"order": "customer", "order_line": "order"}


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def books(request: pytest.FixtureRequest, state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """The sandbox at scale 200, accounting on the database of the parameter, after the demo days."""
    put_on_server(request, monkeypatch, "accounting")
    handle = open_demo(state)
    handle.before = handle.snapshot("accounting")  # type: ignore[attr-defined]
    handle.reports = [handle.run(FLOW, day) for day in range(DEMO_DAYS)]  # type: ignore[attr-defined]
    yield handle
    handle.close()


def _results(books: Demo) -> pd.DataFrame:
    return pd.concat([staging.run_results(books.store, r["run_id"]) for r in books.reports])  # type: ignore[attr-defined]


def test_the_demo_days_load_as_labelled_parents_first_and_bad_lines_wait_alone(books: Demo) -> None:
    """One sandbox per database for five checks that only read it (building one costs ~15 s)."""
    _classified_as_labelled(books)
    _parents_first(books)
    _bad_lines_wait_alone(books)
    _invoices_leave_open_what_the_finance_ledger_says(books)
    _a_customer_colliding_with_an_account_waits_naming_it(books)


def _classified_as_labelled(books: Demo) -> None:
    """First runs classify every record as labelled; accounting then equals the shop outside the queue."""
    labels = books.labels()
    labels = labels[labels["flow"] == FLOW]
    assert set(labels["entity"]) == {"customer", "order", "order_line"}
    lines = labels[labels["entity"] == "order_line"]
    assert {"in_sync", "missing", "delayed", "overwritten", "invalid"} <= set(lines["class"])
    assert set(lines["check"]) >= {"parent_exists", "expect_column_values_to_be_between"}
    wrong = differences(labels, first_results(books.store, FLOW))
    assert wrong.empty, f"differs from the ground truth:\n{wrong.to_string()}"
    for report in books.reports:  # type: ignore[attr-defined]
        assert_conserved(books, report)
    for entity in ("customer", "order", "order_line"):
        assert drift(books.config, FLOW, entity) <= held_keys(books.store, FLOW, entity)
    assert "target_rejected" not in set(_results(books)["check_name"]), "accounting refused no write"


def _parents_first(books: Demo) -> None:
    """No sales order reaches accounting before its account, nor a line before its order."""
    tables = {name: books.table("accounting", name) for name in ("sales_orders", "sales_order_lines")}
    with pytest.raises(IntegrityError), books.engine("accounting").begin() as conn:  # the foreign keys hold
        conn.execute(insert(tables["sales_orders"]).values(order_ref="O-NOBODY", customer_ref="C-NOBODY"))
    with pytest.raises(IntegrityError), books.engine("accounting").begin() as conn:
        conn.execute(insert(tables["sales_order_lines"]).values(order_ref="O-NOBODY", line_no=1))
    with books.store.engine.connect() as conn:
        query = select(ledger.c.entity, ledger.c.key, ledger.c.target_ts).where(ledger.c.flow == FLOW)
        written = {(e, k): ts for e, k, ts in conn.execute(query)}
    before = books.before  # type: ignore[attr-defined]
    there = {"customer": {r["customer_ref"] for r in before["accounts"]},
             "order": {r["order_ref"] for r in before["sales_orders"]}}  # fmt: skip
    results = _results(books)
    created = results[results["outcome"] == "created"]
    written_after = 0
    for entity, parent in PARENTS.items():
        for key in created.loc[created["entity"] == entity, "key"]:
            parent_key = _parent_key(books, entity, key)
            if parent_key not in there[parent]:
                assert written[(parent, parent_key)] <= written[(entity, key)], (entity, key)
                written_after += 1
    assert written_after > 20, "many records were created after a parent the runs created"


def _parent_key(books: Demo, entity: str, key: str) -> Any:
    """The parent's key of a record accounting now holds."""
    if entity == "order_line":
        return key.split("|")[0]
    return books.by_key("accounting", "sales_orders", "order_ref")[key]["customer_ref"]


def test_a_rerun_writes_nothing(books: Demo) -> None:
    before = books.snapshot("accounting")
    again = [books.run(FLOW, day, tag="again") for day in range(DEMO_DAYS)]
    for report in again:
        assert (report["totals"]["created"], report["totals"]["updated"]) == (0, 0), report["totals"]
    assert books.snapshot("accounting") == before


def _bad_lines_wait_alone(books: Demo) -> None:
    """A bad line waits with its reason while the rest of its order loads."""
    labels = books.labels()
    bad = labels[(labels["flow"] == FLOW) & (labels["class"] == "invalid") & (labels["entity"] == "order_line")]
    reasons = {"expect_column_values_to_be_between": ("quantity", "must be at least 0"),
               "expect_column_values_to_not_be_null": ("sku", "must not be null")}  # fmt: skip
    held = books.by_key("accounting", "sales_order_lines", "order_ref")
    lines = {(r["order_ref"], r["line_no"]): r for r in books.rows("accounting", "sales_order_lines")}
    before = {(r["order_ref"], r["line_no"]): r for r in books.before["sales_order_lines"]}  # type: ignore[attr-defined]
    assert set(bad["check"]) == set(reasons)
    for row in bad.itertuples(index=False):
        exception = books.exception(FLOW, "order_line", row.key)
        field, rule = reasons[row.check]
        assert (exception["check_name"], exception["field"]) == (row.check, field)
        assert rule in exception["reason"]
        order, number = row.key.split("|")
        assert lines.get((order, int(number))) == before.get((order, int(number))), "the bad version is not written"
        assert order in books.by_key("accounting", "sales_orders", "order_ref"), "its order loaded"
    siblings = [order for order in (k.split("|")[0] for k in bad["key"]) if order in held]
    assert siblings, "some bad line has a sibling line that loaded"


def _invoices_leave_open_what_the_finance_ledger_says(books: Demo) -> None:
    """The view ``invoice_balances`` (the books a payment is reconciled against) computes each invoice's
    balance from the finance ledger: its total less captured payments plus paid-out refunds."""
    effect = {("payment", "captured"): -1, ("refund", "refunded"): 1}
    totals = {r["invoice_ref"]: Decimal(str(r["total"])) for r in books.rows("accounting", "invoices")}
    expected = dict(totals)
    for entry in books.rows("accounting", "finance_entries"):
        expected[entry["invoice_ref"]] += effect.get((entry["kind"], entry["state"]), 0) * Decimal(str(entry["amount"]))
    with books.engine("accounting").connect() as conn:
        rows = conn.execute(text("SELECT invoice_ref, balance FROM invoice_balances")).all()
    shown = {ref: Decimal(str(balance)).quantize(Decimal("0.01")) for ref, balance in rows}
    assert shown == expected
    assert any(shown[ref] != total for ref, total in totals.items()), "the ledger moved some balance"


def _a_customer_colliding_with_an_account_waits_naming_it(books: Demo) -> None:
    """A new shop customer whose id differs from an account holder's only in case is held, and nothing of
    it reaches the holder's account: accounting finds accounts without case on every database."""
    labels = books.labels()
    (twin,) = labels.loc[(labels["flow"] == FLOW) & (labels["check"] == "unique_match"), "key"]
    holder = next(
        key for key in books.by_key("accounting", "accounts", "customer_ref") if key.casefold() == twin.casefold()
    )
    assert holder != twin
    exception = books.exception(FLOW, "customer", twin)
    assert (exception["class"], exception["check_name"], exception["field"]) == (
        "mismatched",
        "unique_match",
        "customer_id",
    )
    assert exception["reason"] == f"key '{twin}' matches '{holder}' in target 'accounting' only by collation"
    shop = books.by_key("webshop", "customers", "ext_id")
    account = books.by_key("accounting", "accounts", "customer_ref")[holder]
    assert account["email"] != shop[twin]["email_address"], "the newcomer's values did not land on the holder's account"
