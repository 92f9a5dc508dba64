"""Reconciliation rules on canonical records: which references contradict the settled record, and why."""

from __future__ import annotations

import pandas as pd
import pytest

from truesync.config import ReconcileConfig
from truesync.pipeline.reconcile import BALANCE_CHECK, PARENT_CHECK, REFERENCE_CHECK, Passed, _balances, _reference

RULES = ReconcileConfig(
    entity="order",
    match_on="invoice_id",
    references={"invoice_id": "invoice_id", "order_id": "order_id", "customer_id": "customer_id"},
    balance="balance",
    total="total",
    amount="amount",
    closing={"kind": "refund", "state": "refunded"},
    settling={"kind": "payment", "state": "captured"},
)
ORDERS = pd.DataFrame(
    {
        "order_id": ["O1", "O2", "O3", "O3b"],
        "invoice_id": ["I1", "I2", "I3", "I3"],
        "customer_id": ["C1", "C2", "C3", "C3"],
        "balance": ["0.00", "25.00", "0.00", "0.00"],
        "total": ["25.00", "25.00", "10.00", "10.00"],
    }
)
NOTHING = pd.DataFrame(columns=["kind", "state", "amount"])


def payment(**fields: str | None) -> pd.Series:
    base = {"invoice_id": "I1", "order_id": "O1", "customer_id": "C1", "kind": "payment", "state": "captured",
            "amount": "25.00"}  # fmt: skip
    return pd.Series({**base, **fields})


def refund(**fields: str | None) -> pd.Series:
    return payment(**{"kind": "refund", "state": "refunded", **fields})


def check(record: pd.Series) -> tuple[str, str] | None:
    return _reference(RULES, record, ORDERS, "order_id", "crm_api")[1]


def balances(records: dict[str, pd.Series], current: pd.DataFrame = NOTHING) -> dict[str, str]:
    """The balance check over records that passed the reference check: key -> reason."""
    passed: list[Passed] = []
    for key, record in records.items():
        hit = _reference(RULES, record, ORDERS, "order_id", "crm_api")[0]
        assert hit is not None
        passed.append((key, record, hit))
    return {key: reason for key, check_name, reason in _balances(RULES, passed, current, "order_id", "crm_api")
            if check_name == BALANCE_CHECK}  # fmt: skip


def test_references_that_agree_pass() -> None:
    assert check(payment()) is None
    assert check(payment(customer_id=None)) is None, "a reference the record lacks is not a contradiction"


def test_invoice_and_order_pointing_at_different_records_name_both() -> None:
    found = check(payment(order_id="O2"))
    assert found is not None and found[0] == REFERENCE_CHECK
    assert "invoice_id 'I1' points at order 'O1', but order_id is 'O2'" in found[1]


def test_an_invoice_matching_several_records_is_a_contradiction() -> None:
    found = check(payment(invoice_id="I3", order_id="O3", customer_id="C3"))
    assert found is not None and found[0] == REFERENCE_CHECK and "matches 2 order" in found[1]


def test_an_invoice_matching_no_record_waits_for_it() -> None:
    found = check(payment(invoice_id="I9", order_id="O9", customer_id="C9"))
    assert found is not None and found[0] == PARENT_CHECK and "no order in 'crm_api' has invoice_id 'I9'" in found[1]


def test_a_refund_of_an_unpaid_order_is_a_contradiction() -> None:
    found = balances({"R2": refund(invoice_id="I2", order_id="O2", customer_id="C2")})
    assert list(found) == ["R2"]
    assert "invoice_id 'I2', order_id 'O2'" in found["R2"] and "open balance of 25.00 of 25.00" in found["R2"]


def test_a_refund_of_a_paid_order_is_clean_and_so_is_a_second_partial_one() -> None:
    assert balances({"R1": refund()}) == {}
    assert balances({"R1": refund(amount="10.00"), "R1b": refund(amount="15.00")}) == {}
    found = balances({"R1": refund(amount="10.00"), "R1b": refund(amount="15.01")})
    assert list(found) == ["R1b"], "together they pay out more than was received"


def test_a_refund_already_in_the_target_is_judged_without_its_own_effect() -> None:
    orders = ORDERS.copy()
    orders.loc[0, "balance"] = "10.00"  # the first partial refund is recorded and reopened the balance
    current = pd.DataFrame([refund(amount="10.00")], index=["R1"])
    passed: list[Passed] = [("R1", refund(amount="10.00", customer_id=None), orders.iloc[0])]
    assert list(_balances(RULES, passed, current, "order_id", "crm_api")) == []
    passed.append(("R1b", refund(amount="15.00"), orders.iloc[0]))
    assert list(_balances(RULES, passed, current, "order_id", "crm_api")) == []


def test_a_capture_and_its_refund_in_one_chunk_are_clean() -> None:
    records = {"P2": payment(invoice_id="I2", order_id="O2", customer_id="C2"),
               "R2": refund(invoice_id="I2", order_id="O2", customer_id="C2")}  # fmt: skip
    assert balances(records) == {}


@pytest.mark.parametrize("state", ["authorised", "failed"])
def test_a_refund_not_closed_yet_has_nothing_to_contradict(state: str) -> None:
    assert balances({"R2": refund(invoice_id="I2", order_id="O2", customer_id="C2", state=state)}) == {}
