"""Reading REST items: member paths, change times in ISO 8601 or epoch numbers, and window bounds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from truesync.connectors.rest.members import member, parse_time, steps, time_param

ITEM = {"id": "ch_1", "metadata": {"invoice_id": "INV-1"}, "refunds": {"data": [{"amount": 3000}, {"amount": 5}]},
        "empty": {"data": []}, "none": None, "text": "abc"}  # fmt: skip


def test_a_path_reads_names_and_list_elements() -> None:
    assert steps("refunds.data[1].amount") == ("refunds", "data", 1, "amount")
    assert member(ITEM, "id") == "ch_1"
    assert member(ITEM, "metadata.invoice_id") == "INV-1"
    assert member(ITEM, "refunds.data[0].amount") == 3000
    assert member(ITEM, "refunds.data[1].amount") == 5


@pytest.mark.parametrize(
    "path", ["missing", "metadata.order_id", "none.member", "empty.data[0].amount", "refunds.data[2].amount",
             "text.member", "metadata[0]", "refunds.data.amount"],
)  # fmt: skip
def test_a_path_leading_nowhere_reads_null(path: str) -> None:
    assert member(ITEM, path) is None


def test_change_times_in_each_format_become_naive_utc() -> None:
    when = datetime(2026, 11, 2, 9, 0, 0)
    assert parse_time(1793610000, "epoch_s") == when
    assert parse_time("1793610000", "epoch_s") == when
    assert parse_time(1793610000250, "epoch_ms") == when + timedelta(milliseconds=250)
    assert parse_time("2026-11-02T10:00:00+01:00", "iso") == when
    for bad in (None, True, "soon", [1], {"t": 1}, 1e300, float("nan"), "nan", "inf"):
        assert parse_time(bad, "epoch_s") is None


def test_window_bounds_are_written_in_the_format_and_a_start_is_never_rounded_down() -> None:
    when = datetime(2026, 11, 2, 9, 0, 0)
    assert time_param(when, "epoch_s") == "1793610000"
    assert time_param(when + timedelta(microseconds=1), "epoch_s") == "1793610001"
    assert time_param(when + timedelta(microseconds=1), "epoch_ms") == "1793610000001"
    assert time_param(when.replace(tzinfo=timezone(timedelta(hours=1))), "epoch_s") == "1793606400"
    assert time_param(when, "iso") == "2026-11-02T09:00:00+00:00"
