"""COPY's text format as ``support.bulk`` writes it: every value escaped once, in its own row.

The column is escaped as one joined string; these check the alignment survives values that
need escaping, nulls, mixed types, and a NUL byte (the joining character) in a value.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from truesync.support.bulk import _copy_column


def test_a_text_column_is_escaped_value_by_value() -> None:
    values = ["plain", None, "tab\there", "back\\slash\nline", "", "\\N"]
    assert _copy_column(values) == ["plain", "\\N", "tab\\there", "back\\\\slash\\nline", "", "\\\\N"]


def test_a_column_without_separators_is_passed_through() -> None:
    assert _copy_column(["a", "b", None]) == ["a", "b", "\\N"]


def test_times_numbers_and_booleans_get_their_text() -> None:
    moment = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    assert _copy_column([moment, None]) == ["2026-11-01T12:30:00+00:00", "\\N"]
    assert _copy_column([date(2026, 1, 2), Decimal("12.50"), True, False, 7, "x\ty"]) == [
        "2026-01-02",
        "12.50",
        "t",
        "f",
        "7",
        "x\\ty",
    ]


def test_a_repeated_date_or_naive_time_is_spelled_like_each_of_its_rows() -> None:
    """Dates and naive times are spelled once per distinct value; every row still gets its own text."""
    stamp = datetime(2026, 12, 7, 9, 0, 0, 123456)
    times = [stamp, None, stamp, datetime(2026, 12, 7), stamp]
    assert _copy_column(times) == [
        stamp.isoformat(),
        "\\N",
        stamp.isoformat(),
        "2026-12-07T00:00:00",
        stamp.isoformat(),
    ]
    assert _copy_column([date(2026, 1, 2), date(2026, 1, 2), None]) == ["2026-01-02", "2026-01-02", "\\N"]


def test_equal_values_of_other_spellings_keep_their_own_text() -> None:
    """One instant at two offsets, a naive time beside an aware one, and equal decimals of other
    scales: a column spelled once per distinct value would give them one text, and a
    ``timestamp without time zone`` column would then store another wall time."""
    at_utc = datetime(2026, 11, 1, 12, tzinfo=UTC)
    at_one = at_utc.astimezone(timezone(timedelta(hours=1)))
    assert at_utc == at_one
    assert _copy_column([at_utc, at_one, at_utc]) == [
        "2026-11-01T12:00:00+00:00",
        "2026-11-01T13:00:00+01:00",
        "2026-11-01T12:00:00+00:00",
    ]
    naive = datetime(2026, 11, 1, 12)
    assert _copy_column([naive, at_one, naive]) == [
        "2026-11-01T12:00:00",
        "2026-11-01T13:00:00+01:00",
        "2026-11-01T12:00:00",
    ]
    assert _copy_column([Decimal("1.0"), Decimal("1.00"), None]) == ["1.0", "1.00", "\\N"]


def test_a_nul_byte_in_a_value_keeps_every_value_in_its_row() -> None:
    """The database refuses the NUL itself; the other values must not shift into its place."""
    values = ["a\tb", "nul\x00inside", "c\nd"]
    assert _copy_column(values) == ["a\\tb", "nul\x00inside", "c\\nd"]
