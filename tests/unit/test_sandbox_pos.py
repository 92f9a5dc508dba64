"""The POS sandbox's later deliveries, for any number of demo days."""

from __future__ import annotations

from datetime import date

from truesync.sandbox import pos
from truesync.sandbox.systems import Rows


def _event(event_id: str, code: str, order_ref: str, at: str) -> dict[str, str]:
    return {"event_id": event_id, "terminal_id": "T01", "code": code, "order_ref": order_ref,
            "event_time": at, "amount": "1.00"}  # fmt: skip


def test_a_last_day_without_a_plain_sale_or_an_order_is_redelivered_as_it_was() -> None:
    files = {
        "T01/events-2026-11-01.csv": pos._csv([_event("E1", "A00", "O1", "2026-11-01T09:00:00")]),
        "T01/events-2026-11-02.csv": pos._csv([_event("E2", "V10", "", "2026-11-02T09:00:00")]),
    }
    labels = Rows()
    later = pos.plan_deliveries(files, date(2026, 11, 1), 2, labels)
    assert later["T01/events-2026-11-02.csv"] == files["T01/events-2026-11-02.csv"]
    stuck = later["T03/events-2026-11-03-late.csv"]
    assert stuck.count(",O1,") == 3, "late events reference an order of an earlier day"
    assert {(r["key"], r["class"]) for r in labels.labels} == {
        ("E2", "in_sync"),
        ("EV-T03-LATE-0000", "missing"),
        ("EV-T03-LATE-0001", "missing"),
        ("EV-T03-LATE-0002", "missing"),
    }


def test_the_last_days_plain_sale_the_sla_calls_overdue_is_the_one_corrected() -> None:
    day = [_event("E1", "A00", "O1", "2026-11-01T20:00:00"), _event("E2", "A00", "O2", "2026-11-01T09:00:00")]
    labels = Rows()
    later = pos.plan_deliveries({"T01/events-2026-11-01.csv": pos._csv(day)}, date(2026, 11, 1), 1, labels)
    assert "E2,T01,2026-11-01T09:00:00,C01" in later["T01/events-2026-11-01.csv"]
    assert {r["key"]: r["class"] for r in labels.labels if r["key"] in ("E1", "E2")} == {
        "E1": "in_sync",
        "E2": "delayed",
    }
