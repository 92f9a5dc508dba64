"""Reconciliation rules on canonical records: which references contradict the settled record, and why."""

from __future__ import annotations

import pandas as pd
import pytest

from truesync.config import ReconcileConfig
from truesync.reconcile import BALANCE_CHECK, REFERENCE_CHECK, _contradiction

RULES = ReconcileConfig(
    entity="order",
    match_on="invoice_id",
    references={"invoice_id": "invoice_id", "order_id": "order_id", "customer_id": "customer_id"},
    balance="balance",
    closing={"kind": "refund", "state": "refunded"},
)
ORDERS = pd.DataFrame(
    {
        "order_id": ["O1", "O2", "O3", "O3b"],
        "invoice_id": ["I1", "I2", "I3", "I3"],
        "customer_id": ["C1", "C2", "C3", "C3"],
        "balance": ["0.00", "25.00", "0.00", "0.00"],
    }
)


def payment(**fields: str | None) -> pd.Series:
    base = {"invoice_id": "I1", "order_id": "O1", "customer_id": "C1", "kind": "payment", "state": "captured"}
    return pd.Series({**base, **fields})


def check(record: pd.Series) -> tuple[str, str] | None:
    return _contradiction(RULES, record, ORDERS, "order_id", "crm_api")


def test_references_that_agree_pass() -> None:
    assert check(payment()) is None
    assert check(payment(customer_id=None)) is None, "a reference the record lacks is not a contradiction"


def test_invoice_and_order_pointing_at_different_records_name_both() -> None:
    found = check(payment(order_id="O2"))
    assert found is not None and found[0] == REFERENCE_CHECK
    assert "invoice_id 'I1' points at order 'O1', but order_id is 'O2'" in found[1]


@pytest.mark.parametrize(("invoice", "found"), [("I9", "no order"), ("I3", "2 order")])
def test_an_invoice_matching_no_or_several_records_is_a_contradiction(invoice: str, found: str) -> None:
    result = check(payment(invoice_id=invoice, order_id="O3", customer_id="C3"))
    assert result is not None and result[0] == REFERENCE_CHECK and f"matches {found}" in result[1]


def test_a_refund_closed_in_finance_against_an_open_balance_is_a_contradiction() -> None:
    refund = payment(invoice_id="I2", order_id="O2", customer_id="C2", kind="refund", state="refunded")
    found = check(refund)
    assert found is not None and found[0] == BALANCE_CHECK
    assert "invoice_id 'I2', order_id 'O2'" in found[1] and "open balance of 25.00" in found[1]
    assert check(payment(kind="refund", state="refunded")) is None, "a refund of a paid order is clean"
    assert check(refund.copy().replace({"refunded": "authorised"})) is None, "not closed yet: nothing to contradict"
