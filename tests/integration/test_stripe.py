"""Stripe as a payment source, configured in YAML only, proven against localstripe (a third-party fake).

The configuration is the worked example in ``docs/examples/stripe/``, merged into the
sandbox's, with the differences localstripe 1.15.10 has from Stripe applied on top (listed
in ``LOCALSTRIPE`` and in docs/configuration.md, "Stripe"). Charges, captures and refunds
are created through localstripe's own API; the CRM is the sandbox's REST CRM. The run is the
engine's; ``tests/airflow/test_stripe_dag.py`` runs the same flow through Airflow.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sandbox_demo import assert_conserved
from stripe_server import (
    SECRET_KEY,
    ChargeEvents,
    Stripe,
    crm_items,
    crm_writes,
    localstripe,
    next_second,
    sandbox_crm,
    scenario,
    stripe_config,
)

from truesync.config import Config, EntityMapping
from truesync.connectors.rest.connection import HttpConnection
from truesync.connectors.rest.settings import EndpointConfig, RestConfig
from truesync.connectors.rest.system import RestSystem
from truesync.core.canonical import EPOCH
from truesync.pipeline.compare import run_compare
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.sandbox.api import ServerThread
from truesync.store import Store, queue, staging

FLOW = "stripe_to_crm_api"


@dataclass
class StripeFlow:
    config: Config
    store: Store
    stripe: Stripe
    crm: ServerThread

    def run(self, run_id: str, start: datetime, end: datetime) -> dict[str, Any]:
        return run_flow(self.config, self.store, FLOW, run_id, Window(start, end))

    def crm_items(self, collection: str) -> dict[str, dict[str, Any]]:
        return crm_items(self.crm, collection)

    def crm_writes(self) -> int:
        return crm_writes(self.crm)


@pytest.fixture
def stripe_flow(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeFlow]:
    with sandbox_crm() as crm, localstripe(tmp_path) as stripe:
        config = stripe_config(tmp_path / "config", stripe.url, crm.url, monkeypatch)
        handle = StripeFlow(config, Store(), stripe, crm)
        yield handle
        handle.store.engine.dispose()


def _classes(store: Store, run_id: str) -> dict[str, tuple[str, str]]:
    results = staging.run_results(store, run_id)
    return {row.key: (row.entity, row["class"]) for _, row in results.iterrows()}


def test_stripe_charges_and_refunds_are_classified_reconciled_and_a_rerun_writes_nothing(
    stripe_flow: StripeFlow, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    start = next_second() - timedelta(seconds=1)
    labels = scenario(stripe_flow.stripe)
    end = next_second()

    report = stripe_flow.run("stripe:1", start, end)
    assert _classes(stripe_flow.store, "stripe:1") == labels
    assert_conserved(stripe_flow, report)  # type: ignore[arg-type]

    payments = stripe_flow.crm_items("payments")
    by_label = {key: payments.get(key) for key in labels}
    written = {key: (p["kind"], p["state"], p["amount"], p["currency"]) for key, p in by_label.items() if p}
    assert sorted(written.values()) == sorted([
        ("payment", "captured", "120.00", "USD"), ("payment", "captured", "200.00", "USD"),
        ("payment", "captured", "80.00", "USD"), ("payment", "captured", "1200.00", "JPY"),
        ("payment", "authorised", "10.00", "USD"), ("refund", "refunded", "30.00", "USD"),
        ("refund", "refunded", "80.00", "USD"),
    ])  # fmt: skip
    balances = {ref: deal["balance"] for ref, deal in stripe_flow.crm_items("deals").items()}
    assert balances == {"O1": "0.00", "O2": "30.00", "O3": "80.00", "O4": "50.00", "O5": "0.00"}

    held = queue.list_exceptions(stripe_flow.store, flow=FLOW, status="open")
    reasons = {row["key"]: (row["check_name"], row["field"], row["reason"]) for row in held}
    mismatched = next(k for k, label in labels.items() if label == ("charge", "mismatched"))
    over_refund = next(k for k, label in labels.items() if label == ("refund", "mismatched"))
    invalid = next(k for k, (_, c) in labels.items() if c == "invalid")
    assert reasons[mismatched][0] == "reference_match" and "INV-3" in reasons[mismatched][2]
    assert reasons[over_refund][0] == "open_balance" and "open balance of 50.00" in reasons[over_refund][2]
    assert (
        reasons[invalid][:2] == ("expect_column_values_to_not_be_null", "invoice_id")
        and "must not be null" in reasons[invalid][2]
    )
    assert set(reasons) == {mismatched, over_refund, invalid}

    writes = stripe_flow.crm_writes()
    rerun = stripe_flow.run("stripe:1-again", start, end)
    assert rerun["status"] == "success"
    assert stripe_flow.crm_writes() == writes, "a rerun of the same window wrote to the CRM"
    again = _classes(stripe_flow.store, "stripe:1-again")
    held_again = {k: c for k, (_, c) in again.items() if c != "in_sync"}
    assert held_again == {mismatched: "mismatched", over_refund: "mismatched", invalid: "invalid"}

    compared = run_compare(stripe_flow.config, stripe_flow.store, FLOW, "stripe:compare")
    assert {entity: body["quiet"] for entity, body in compared["entities"].items()} == {"charge": 0, "refund": 0}
    assert stripe_flow.crm_writes() == writes, "a full compare right after a sync found something to repair"

    first_charge = next(k for k, (e, _) in labels.items() if e == "charge")
    late_refund = stripe_flow.stripe.refund(first_charge, 2000)
    final = next_second()
    stripe_flow.run("stripe:2", end, final)
    retried = {key: labels[key] for key in (mismatched, over_refund, invalid)}  # open exceptions, fetched by key
    assert _classes(stripe_flow.store, "stripe:2") == {late_refund: ("refund", "missing"), **retried}
    assert stripe_flow.crm_items("deals")["O1"]["balance"] == "20.00"

    shown = caplog.text + json.dumps([report, held], default=str)
    assert SECRET_KEY not in shown


def test_localstripes_events_are_read_as_envelopes_with_the_events_own_time(tmp_path: Path) -> None:
    """localstripe emits customer events only (no charge or refund events): they prove the envelope shape."""
    events = EndpointConfig(
        path="/v1/events", items_field="data", record_path="data.object", time_format="epoch_s",
        pagination={"style": "after_id", "page_size": 1}, since_param="created[gte]", until_param="created[lt]",
        params={"type": "customer.updated"},
    )  # fmt: skip
    mapping = EntityMapping(table="events", key="id", cursor="created", fields={"customer_id": "id", "email": "email"})
    with localstripe(tmp_path) as stripe:
        start = next_second()
        first = stripe.post("/v1/customers", email="old@example.com")["id"]
        second = stripe.post("/v1/customers", email="two@example.com")["id"]
        changed = next_second()
        stripe.post(f"/v1/customers/{first}", email="new@example.com")
        stripe.post(f"/v1/customers/{second}", email="two.b@example.com")
        end = next_second()
        config = RestConfig(auth={"type": "basic"}, endpoints={"events": events})
        system = RestSystem("stripe", config, HttpConnection(stripe.url, SECRET_KEY, None))
        frame = pd.concat(system.extract(mapping, start, end, 100), ignore_index=True)
    assert sorted(zip(frame["id"], frame["email"], frame["created"], strict=True)) == sorted([
        (first, "new@example.com", changed.isoformat()), (second, "two.b@example.com", changed.isoformat()),
    ])  # fmt: skip


def test_the_events_feed_finds_a_capture_after_the_charges_own_window(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example as shipped for Stripe, charges read through ``charge_events``, on a Stripe-shaped server.

    A charge authorised in the first hour and captured in the second keeps its ``created``:
    only its ``charge.captured`` event, in the second hour's window, says it changed.
    """
    hour = datetime(2026, 11, 2, 9)
    at = int((hour - EPOCH).total_seconds())
    stripe = ChargeEvents()
    stripe.charge("ch_late", at + 300, 12000, "usd", False, order_id="O1", invoice_id="INV-1", customer_id="C1")
    stripe.charge("ch_paid", at + 600, 20000, "usd", True, order_id="O2", invoice_id="INV-2", customer_id="C2")
    with sandbox_crm() as crm:
        api = ServerThread(stripe.app()).start()
        try:
            config = stripe_config(tmp_path / "config", api.url, crm.url, monkeypatch, dialect=False)
            config.mappings["payments_stripe"].entities["charge"].table = "charge_events"
            store = Store()
            run_flow(config, store, FLOW, "events:1", Window(hour, hour + timedelta(hours=1)))
            assert _classes(store, "events:1") == {"ch_late": ("charge", "missing"), "ch_paid": ("charge", "missing")}
            assert crm_items(crm, "payments")["ch_late"]["state"] == "authorised"
            stripe.capture("ch_late", at + 4200)
            second = run_flow(
                config, store, FLOW, "events:2", Window(hour + timedelta(hours=1), hour + timedelta(hours=2))
            )
            compared = run_compare(config, store, FLOW, "events:compare")
        finally:
            api.stop()
        assert _classes(store, "events:2") == {"ch_late": ("charge", "delayed")}
        assert second["entities"]["charge"]["extracted"] == 1
        assert second["entities"]["charge"]["outcomes"]["updated"] == 1
        assert crm_items(crm, "payments")["ch_late"]["state"] == "captured"
        assert crm_items(crm, "deals")["O1"]["balance"] == "0.00"
        assert {entity: body["quiet"] for entity, body in compared["entities"].items()} == {"charge": 0, "refund": 0}
