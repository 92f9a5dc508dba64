"""Flows into and out of the sandbox REST services, run by the engine, faults switched on.

The REST CRM is seeded as the SQL CRM's twin, so ``webshop_to_crm_api`` must classify
exactly as ``labels.csv`` says; the services run on localhost over real sockets.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from sandbox_demo import assert_conserved
from sandboxapis import sandbox_apis
from sqlalchemy import select, text

from truesync import cli
from truesync.config import Config, load_config
from truesync.connectors.rest.session import BadResponse
from truesync.pipeline import reconcile
from truesync.pipeline.compare import run_compare
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.sandbox import systems as sandbox
from truesync.sandbox.api import DEFAULT_TOKEN, ServerThread
from truesync.sandbox.groundtruth import differences, first_results
from truesync.store import Store, queue, staging
from truesync.store.schema import audit
from truesync.support.sqldb import open_engine

REST_FLOW = "webshop_to_crm_api"
DEMO_START = datetime.combine(sandbox.DEMO_START, datetime.min.time())


@dataclass
class RestDemo:
    config: Config
    store: Store
    state: Path
    servers: dict[str, ServerThread]

    def url(self, system: str) -> str:
        return self.servers[system].url

    def faults(self, system: str, **switches: Any) -> None:
        requests.post(f"{self.url(system)}/_faults", json=switches, timeout=5).raise_for_status()

    def stats(self, system: str) -> Counter:
        return Counter(requests.get(f"{self.url(system)}/_stats", timeout=5).json())

    def items(self, system: str, collection: str) -> list[dict[str, Any]]:
        return requests.get(f"{self.url(system)}/_items/{collection}", timeout=5).json()

    def run(self, flow: str, day: int, tag: str = "") -> dict[str, Any]:
        start = DEMO_START + timedelta(days=day)
        window = Window(start - self.config.flows[flow].lookback, start + timedelta(days=1))
        return run_flow(self.config, self.store, flow, f"{flow}:{tag}day{day}", window)

    def labels(self, flow: str) -> pd.DataFrame:
        labels = pd.read_csv(self.state / "sandbox" / "labels.csv", dtype=str, keep_default_na=False)
        return labels[labels["flow"] == flow]


@pytest.fixture
def rest_demo(state: Path) -> Iterator[RestDemo]:
    assert cli.main(["sandbox", "init", "--scale", "200"]) == 0
    with sandbox_apis(state) as servers:
        config = load_config()
        for system in servers:
            settings = config.systems[system].settings
            settings.read_timeout, settings.backoff_factor, settings.retries = 1.0, 0.05, 10
        handle = RestDemo(config, Store(), state, servers)
        yield handle
        handle.store.engine.dispose()


def test_webshop_to_rest_crm_survives_every_fault_and_classifies_as_the_ground_truth_says(rest_demo: RestDemo) -> None:
    rest_demo.faults(
        "crm_api", rate_limit=3, server_error=4, slow=2, delay=1.5, lose_response=3, tie_split=True, repeat_item=True
    )
    for day in range(sandbox.DEMO_DAYS):
        assert_conserved(rest_demo, rest_demo.run(REST_FLOW, day))
    diff = differences(rest_demo.labels(REST_FLOW), first_results(rest_demo.store, REST_FLOW))
    assert diff.empty, diff.to_string()
    stats = rest_demo.stats("crm_api")
    assert all(stats[f"fault.{f}"] for f in ("rate_limit", "server_error", "slow", "lose_response")), stats
    for collection, key in (("contacts", "external_id"), ("deals", "order_ref")):
        counts = Counter(i[key] for i in rest_demo.items("crm_api", collection))
        assert max(counts.values()) == 1, f"no {collection} record was created twice"


def test_rerunning_a_window_against_the_rest_crm_writes_nothing(rest_demo: RestDemo) -> None:
    for day in range(sandbox.DEMO_DAYS):
        rest_demo.run(REST_FLOW, day)
    writes = _writes(rest_demo.stats("crm_api"))
    held = {e["key"] for e in queue.list_exceptions(rest_demo.store, flow=REST_FLOW) if e["status"] in queue.ACTIVE}
    report = rest_demo.run(REST_FLOW, sandbox.DEMO_DAYS - 1, tag="again-")
    assert_conserved(rest_demo, report)
    for body in report["entities"].values():
        assert body["outcomes"]["created"] == body["outcomes"]["updated"] == 0, body
        assert body["outcomes"]["quarantined"] <= len(held)
    assert _writes(rest_demo.stats("crm_api")) == writes


def _writes(stats: Counter) -> int:
    return sum(n for name, n in stats.items() if name.split(" ")[0] in ("POST", "PATCH", "PUT"))


# --- payment reconciliation -------------------------------------------------------------------

PAY_FLOW = "payments_to_crm_api"
SKIP_INTO_THE_WRITES = 6  # the customer sync's probe and lookups come first, then one request per write


def test_payment_reconciliation_classifies_the_labelled_cases_exactly(rest_demo: RestDemo) -> None:
    rest_demo.faults("payments", rate_limit=2, server_error=2, tie_split=True, repeat_item=True)
    rest_demo.faults("crm_api", server_error=2, lose_response=2, delay=1.5)
    for day in range(sandbox.DEMO_DAYS):
        assert_conserved(rest_demo, rest_demo.run(PAY_FLOW, day))
    labels = rest_demo.labels(PAY_FLOW)
    assert {"in_sync", "missing", "delayed", "mismatched", "invalid"} == set(labels["class"])
    assert {"open_balance", "reference_match", sandbox.NOT_NULL, sandbox.IN_SET} <= set(labels["check"])
    diff = differences(labels, first_results(rest_demo.store, PAY_FLOW))
    assert diff.empty, diff.to_string()
    payments = Counter(p["payment_ref"] for p in rest_demo.items("crm_api", "payments"))
    assert max(payments.values()) == 1, "no payment was recorded twice"


def test_mismatched_payments_name_both_references_and_clean_refunds_update_the_balance(rest_demo: RestDemo) -> None:
    for day in range(sandbox.DEMO_DAYS):
        rest_demo.run(PAY_FLOW, day)
    labels = rest_demo.labels(PAY_FLOW).set_index("key")
    gateway = {t["txn_id"]: t for t in rest_demo.items("payments", "transactions")}
    for exc in queue.list_exceptions(rest_demo.store, flow=PAY_FLOW, **{"class": "mismatched"}):
        txn = gateway[exc["key"]]
        assert exc["check_name"] == labels.at[exc["key"], "check"]
        assert f"invoice_id '{txn['invoice_id']}'" in exc["reason"] and f"'{txn['order_id']}'" in exc["reason"]
    deals = {d["order_ref"]: d for d in rest_demo.items("crm_api", "deals")}
    recorded = {p["payment_ref"] for p in rest_demo.items("crm_api", "payments")}
    refunds = [t for t in gateway.values() if t["type"] == "refund"]
    clean = [t for t in refunds if labels.at[t["txn_id"], "class"] in ("missing", "delayed")]
    assert clean and all(t["txn_id"] in recorded for t in clean)
    refunded: dict[str, Decimal] = {}
    for refund in clean:
        refunded[refund["order_id"]] = refunded.get(refund["order_id"], Decimal(0)) + Decimal(refund["amount"])
    assert len(refunded) < len(clean), "some deal is refunded in parts"
    for order, amount in refunded.items():
        assert Decimal(deals[order]["balance"]) == amount, "paid, then refunded: the refunds open it again"
    held = [t for t in refunds if labels.at[t["txn_id"], "class"] == "mismatched"]
    assert held and not any(t["txn_id"] in recorded for t in held)
    waiting = queue.list_exceptions(rest_demo.store, flow=PAY_FLOW, check_name="parent_exists")
    assert waiting and all(e["class"] == "missing" and "waits for it" in e["reason"] for e in waiting)


def _invoices(rest_demo: RestDemo) -> dict[str, dict[str, Any]]:
    """Accounting's invoices with the balance its finance ledger leaves open, by invoice."""
    engine = open_engine(sandbox.system_urls(rest_demo.config)["accounting"])
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM invoice_balances")).mappings().all()
    engine.dispose()
    cents = Decimal("0.01")  # SQLite computes the view's balance as a float
    return {row["invoice_ref"]: {**row, "balance": Decimal(str(row["balance"])).quantize(cents)} for row in rows}


def _closed_in_finance(rest_demo: RestDemo) -> list[dict[str, Any]]:
    labels = rest_demo.labels(PAY_FLOW)
    keys = set(labels.loc[labels["check"] == reconcile.FINANCE_CHECK, "key"])
    found = [t for t in rest_demo.items("payments", "transactions") if t["txn_id"] in keys]
    assert found and all(t["type"] == "refund" for t in found)
    return found


def test_a_refund_closed_in_accounting_but_open_in_the_crm_sets_the_crm_balance_to_accounting(
    rest_demo: RestDemo,
) -> None:
    refunds = _closed_in_finance(rest_demo)
    deals = {d["order_ref"]: d for d in rest_demo.items("crm_api", "deals")}
    kept = {r["order_id"]: {k: deals[r["order_id"]][k] for k in ("amount", "stage", "contact_ref")} for r in refunds}
    invoices = _invoices(rest_demo)
    for refund in refunds:
        open_in_crm = Decimal(deals[refund["order_id"]]["balance"])
        assert open_in_crm == Decimal(refund["amount"]), "paid by bank transfer: only accounting booked it"
    for day in range(sandbox.DEMO_DAYS):
        assert_conserved(rest_demo, rest_demo.run(PAY_FLOW, day))
    deals = {d["order_ref"]: d for d in rest_demo.items("crm_api", "deals")}
    recorded = {p["payment_ref"] for p in rest_demo.items("crm_api", "payments")}
    found = pd.concat(staging.run_results(rest_demo.store, f"{PAY_FLOW}:day{day}") for day in range(sandbox.DEMO_DAYS))
    found = found.set_index("key")
    with rest_demo.store.engine.connect() as conn:
        audited = pd.DataFrame(conn.execute(select(audit).where(audit.c.flow == PAY_FLOW)).mappings().all())
    for refund in refunds:
        key, order, invoice = refund["txn_id"], refund["order_id"], invoices[refund["invoice_id"]]
        assert key in recorded
        assert Decimal(deals[order]["balance"]) == invoice["balance"], "the CRM shows accounting's balance"
        assert {k: deals[order][k] for k in kept[order]} == kept[order], "the rest of the deal is as it was"
        result = found.loc[key]
        assert (result["class"], result["outcome"], result["check_name"]) == ("missing", "created", "finance_balance")
        assert f"order '{order}' in 'crm_api' still shows an open balance of {refund['amount']}" in result["reason"]
        assert (
            f"invoice '{invoice['invoice_ref']}' in 'accounting' booked it against a balance of 0.00"
            in (result["reason"])
        )
        repaired = audited[(audited["entity"] == "order") & (audited["key"] == order)]
        assert repaired[["field", "restored_value"]].values.tolist() == [["balance", str(invoice["balance"])]]
    writes = _writes(rest_demo.stats("crm_api"))
    outcomes = rest_demo.run(PAY_FLOW, sandbox.DEMO_DAYS - 1, tag="again-")["entities"]["payment"]["outcomes"]
    assert outcomes["created"] == outcomes["updated"] == 0
    assert _writes(rest_demo.stats("crm_api")) == writes, "nothing repaired twice"


def test_a_refund_closed_in_accounting_waits_with_both_balances_where_the_crm_owns_its_balance(
    rest_demo: RestDemo,
) -> None:
    finance = rest_demo.config.flows[PAY_FLOW].reconcile["payment"].finance
    assert finance is not None
    finance.owns_balance = False
    refunds = _closed_in_finance(rest_demo)
    before = {d["order_ref"]: d["balance"] for d in rest_demo.items("crm_api", "deals")}
    for day in range(sandbox.DEMO_DAYS):
        assert_conserved(rest_demo, rest_demo.run(PAY_FLOW, day))
    held = {e["key"]: e for e in queue.list_exceptions(rest_demo.store, flow=PAY_FLOW, check_name="finance_balance")}
    assert set(held) == {t["txn_id"] for t in refunds}
    deals = {d["order_ref"]: d["balance"] for d in rest_demo.items("crm_api", "deals")}
    for refund in refunds:
        order, reason = refund["order_id"], held[refund["txn_id"]]["reason"]
        assert held[refund["txn_id"]]["class"] == "mismatched"
        assert f"still shows an open balance of {refund['amount']} of {refund['amount']}" in reason
        assert f"in 'accounting' booked it against a balance of 0.00 of {refund['amount']}" in reason
        assert deals[order] == before[order], "the CRM's balance is the CRM's"


def test_a_payment_whose_invoice_accounting_made_out_for_another_order_is_mismatched(rest_demo: RestDemo) -> None:
    for day in range(sandbox.DEMO_DAYS):
        rest_demo.run(PAY_FLOW, day)
    invoices = _invoices(rest_demo)
    gateway = {t["txn_id"]: t for t in rest_demo.items("payments", "transactions")}
    crossed = [
        e for e in queue.list_exceptions(rest_demo.store, flow=PAY_FLOW, check_name="reference_match")
        if "in 'accounting'" in e["reason"]
    ]  # fmt: skip
    assert crossed
    for exc in crossed:
        txn = gateway[exc["key"]]
        books = invoices[txn["invoice_id"]]
        assert books["order_ref"] != txn["order_id"]
        assert exc["reason"] == (
            f"invoice_id '{txn['invoice_id']}' points at invoice '{txn['invoice_id']}' in 'accounting', but order_id "
            f"is '{txn['order_id']}' (invoice '{txn['invoice_id']}' has order_id '{books['order_ref']}')"
        )


def test_an_unexpected_status_mid_run_fails_the_run_and_what_was_written_stays(rest_demo: RestDemo) -> None:
    before = {c["external_id"] for c in rest_demo.items("crm_api", "contacts")}
    rest_demo.faults("crm_api", skip=SKIP_INTO_THE_WRITES, bad_status=1)
    with pytest.raises(BadResponse, match=r"system 'crm_api' \w+ /contacts\S*: unexpected status 418") as caught:
        rest_demo.run(REST_FLOW, 0)
    assert DEFAULT_TOKEN not in "".join(traceback.format_exception(caught.value))
    kept = {c["external_id"] for c in rest_demo.items("crm_api", "contacts")} - before
    assert kept, "the creates before the failure are committed in the API"

    report = rest_demo.run(REST_FLOW, 0, tag="retry-")
    assert_conserved(rest_demo, report)
    outcomes = staging.run_results(rest_demo.store, report["run_id"], "customer").set_index("key")["outcome"]
    assert set(outcomes[sorted(kept)]) == {"unchanged"}, "found in sync, not created again"
    assert "created" in set(outcomes), "the rest was created by the second run"
    contacts = Counter(c["external_id"] for c in rest_demo.items("crm_api", "contacts"))
    assert max(contacts.values()) == 1


def test_a_record_the_api_refuses_is_quarantined_and_the_rest_are_written(rest_demo: RestDemo) -> None:
    labels = rest_demo.labels(REST_FLOW)
    created = labels[(labels["entity"] == "customer") & (labels["class"] == "missing") & (labels["check"] == "")]
    refused = sorted(created["key"])[0]
    rest_demo.faults("crm_api", reject=[refused])
    for day in range(sandbox.DEMO_DAYS):
        assert_conserved(rest_demo, rest_demo.run(REST_FLOW, day))
    held = queue.list_exceptions(rest_demo.store, flow=REST_FLOW, check_name="target_rejected")
    assert [e["key"] for e in held] == [refused]
    assert held[0]["reason"] == "system 'crm_api' POST /contacts: unexpected status 422"
    contacts = {c["external_id"] for c in rest_demo.items("crm_api", "contacts")}
    assert refused not in contacts and set(created["key"]) - {refused} <= contacts


# --- full compare through the REST CRM's listing ------------------------------------------------


def test_a_compare_reads_the_rest_crm_whole_through_its_listing_and_a_second_writes_nothing(
    rest_demo: RestDemo,
) -> None:
    for day in range(sandbox.DEMO_DAYS):
        rest_demo.run(REST_FLOW, day)
    held = {e["key"] for e in queue.list_exceptions(rest_demo.store, flow=REST_FLOW) if e["status"] in queue.ACTIVE}
    rest_demo.faults("crm_api", rate_limit=2, server_error=2)
    listed = sum(n for name, n in rest_demo.stats("crm_api").items() if name.startswith("GET /contacts"))
    report = run_compare(rest_demo.config, rest_demo.store, REST_FLOW, f"{REST_FLOW}:compare")
    assert report["status"] == "success" and all(body["conserved"] for body in report["entities"].values())
    contacts = len(rest_demo.items("crm_api", "contacts"))
    pages = sum(n for name, n in rest_demo.stats("crm_api").items() if name.startswith("GET /contacts")) - listed
    assert pages >= contacts / 200, "every contact was read through the listing, page by page"
    found = staging.run_results(rest_demo.store, f"{REST_FLOW}:compare")
    differing = found[(found["class"] != "in_sync") & ~found["key"].isin(held)]
    assert sorted(map(tuple, differing[["entity", "key", "class", "outcome"]].to_numpy())) == [
        ("customer", "C0000051", "target_only", "reported"),  # its shop row has no key: someone else's to the CRM
        ("order", "O0000051", "target_only", "reported"),
    ]
    writes = _writes(rest_demo.stats("crm_api"))
    again = run_compare(rest_demo.config, rest_demo.store, REST_FLOW, f"{REST_FLOW}:compare-again")
    assert all(body["outcomes"]["created"] == body["outcomes"]["updated"] == 0 for body in again["entities"].values())
    assert _writes(rest_demo.stats("crm_api")) == writes
