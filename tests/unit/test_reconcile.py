"""Reconciliation rules on canonical records: which references contradict the settled record, and why,
in the target and in the books (``finance``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from truesync.config import FinanceConfig, ReconcileConfig
from truesync.pipeline.reconcile import (
    BALANCE_CHECK,
    FINANCE_CHECK,
    PARENT_CHECK,
    REFERENCE_CHECK,
    _balances,
    _judge,
    _Passed,
    _reference,
    _Side,
)

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
TARGET = _Side("crm_api", "order", RULES.references, ORDERS, "order_id")
FINANCE = FinanceConfig(system="accounting", entity="invoice", references=RULES.references, balance="balance",
                        total="total", owns_balance=True)  # fmt: skip
INVOICES = pd.DataFrame(
    {"invoice_id": ["I1", "I2"], "order_id": ["O1", "O9"], "customer_id": ["C1", "C2"], "balance": ["25.00", "25.00"],
     "total": ["25.00", "25.00"]}
)  # fmt: skip
BOOKS = _Side("accounting", "invoice", RULES.references, INVOICES, "invoice_id")


def payment(**fields: str | None) -> pd.Series:
    base = {"invoice_id": "I1", "order_id": "O1", "customer_id": "C1", "kind": "payment", "state": "captured",
            "amount": "25.00"}  # fmt: skip
    return pd.Series({**base, **fields})


def refund(**fields: str | None) -> pd.Series:
    return payment(**{"kind": "refund", "state": "refunded", **fields})


def check(record: pd.Series, side: _Side = TARGET) -> tuple[str, str] | None:
    return _reference(RULES.match_on, side, record)[1]


def refusals(records: dict[str, pd.Series], current: pd.DataFrame = NOTHING, books: bool = False) -> dict[str, Any]:
    """The balance check over records that passed the reference check: key -> the balance it met."""
    passed: list[_Passed] = []
    for key, record in records.items():
        hit = _reference(RULES.match_on, TARGET, record)[0]
        assert hit is not None
        passed.append(_Passed(key, record, hit, _reference(RULES.match_on, BOOKS, record)[0] if books else None))
    return {r.passed.key: r for r in _balances(RULES, passed, current, "order_id")}


def balances(records: dict[str, pd.Series], current: pd.DataFrame = NOTHING) -> dict[str, str]:
    """The balance check over records that passed the reference check: key -> reason."""
    judged = {key: _judge(RULES, TARGET, None, None, refused) for key, refused in refusals(records, current).items()}
    return {key: reason for key, (check_name, reason, _) in judged.items() if check_name == BALANCE_CHECK}


def test_references_that_agree_pass() -> None:
    assert check(payment()) is None
    assert check(payment(customer_id=None)) is None, "a reference the record lacks is not a contradiction"


def test_invoice_and_order_pointing_at_different_records_name_both() -> None:
    found = check(payment(order_id="O2"))
    assert found is not None and found[0] == REFERENCE_CHECK
    assert "invoice_id 'I1' points at order 'O1' in 'crm_api', but order_id is 'O2'" in found[1]


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
    passed = [_Passed("R1", refund(amount="10.00", customer_id=None), orders.iloc[0], None)]
    assert list(_balances(RULES, passed, current, "order_id")) == []
    passed.append(_Passed("R1b", refund(amount="15.00"), orders.iloc[0], None))
    assert list(_balances(RULES, passed, current, "order_id")) == []


def test_a_capture_and_its_refund_in_one_chunk_are_clean() -> None:
    records = {"P2": payment(invoice_id="I2", order_id="O2", customer_id="C2"),
               "R2": refund(invoice_id="I2", order_id="O2", customer_id="C2")}  # fmt: skip
    assert balances(records) == {}


@pytest.mark.parametrize("state", ["authorised", "failed"])
def test_a_refund_not_closed_yet_has_nothing_to_contradict(state: str) -> None:
    assert balances({"R2": refund(invoice_id="I2", order_id="O2", customer_id="C2", state=state)}) == {}


# --- against the books ------------------------------------------------------------------------------


def test_the_books_contradicting_a_reference_the_target_agrees_with_name_the_books() -> None:
    record = payment(invoice_id="I2", order_id="O2", customer_id="C2")
    assert check(record) is None
    found = check(record, BOOKS)
    assert found == (
        REFERENCE_CHECK,
        "invoice_id 'I2' points at invoice 'I2' in 'accounting', but order_id is 'O2' (invoice 'I2' has order_id 'O9')",
    )


def judged(closed_in_books: bool, owns: bool = True) -> tuple[str, str, Any]:
    """A refund of O1, which the CRM shows unpaid, judged with the books' invoice I1 (paid, then refunded)."""
    orders = ORDERS.copy()
    orders.loc[0, "balance"] = "25.00"
    target = _Side("crm_api", "order", RULES.references, orders, "order_id")
    record = refund()
    passed = [_Passed("R1", record, orders.iloc[0], _reference(RULES.match_on, BOOKS, record)[0])]
    (refused,) = _balances(RULES, passed, NOTHING, "order_id")
    ledger = pd.DataFrame([refund(state="refunded" if closed_in_books else "authorised")], index=["R1"])
    rules = RULES.model_copy(update={"finance": FINANCE.model_copy(update={"owns_balance": owns})})
    return _judge(rules, target, BOOKS, ledger, refused)


def test_a_refund_closed_in_the_books_that_own_the_balance_repairs_the_target_balance() -> None:
    check_name, reason, repair = judged(closed_in_books=True)
    assert check_name == FINANCE_CHECK and repair is not None
    assert (repair.record, repair.entity, repair.settled, repair.field, repair.after) == (
        "R1", "order", "O1", "balance", "25.00"
    )  # fmt: skip
    assert "order 'O1' in 'crm_api' still shows an open balance of 25.00 of 25.00" in reason
    assert "invoice 'I1' in 'accounting' booked it against a balance of 0.00 of 25.00" in reason
    assert reason.endswith("its balance is set to 25.00, the books' after it")


def test_a_refund_closed_in_the_books_that_do_not_own_the_balance_is_held_with_both_balances() -> None:
    check_name, reason, repair = judged(closed_in_books=True, owns=False)
    assert (check_name, repair) == (FINANCE_CHECK, None)
    assert "open balance of 25.00 of 25.00" in reason and "against a balance of 0.00 of 25.00" in reason


def test_a_refund_the_books_have_not_closed_is_an_open_balance_naming_theirs() -> None:
    check_name, reason, repair = judged(closed_in_books=False)
    assert (check_name, repair) == (BALANCE_CHECK, None)
    assert reason.endswith("; invoice 'I1' in 'accounting' has not booked it closed either (balance 25.00 of 25.00)")
