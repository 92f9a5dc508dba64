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

from truesync import cli
from truesync.config import Config, load_config
from truesync.connectors.rest.session import BadResponse
from truesync.pipeline.compare import run_compare
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.sandbox import systems as sandbox
from truesync.sandbox.api import DEFAULT_TOKEN, ServerThread
from truesync.sandbox.groundtruth import differences, first_results
from truesync.store import Store, queue, staging

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
