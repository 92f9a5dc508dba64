"""A run's window from the Airflow data interval, lookback and watermark.

See docs/design.md, "Windows, schedules and backfill".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from truesync.pipeline.window import EPOCH, Window, plan_window

DAY = timedelta(days=1)
LOOKBACK = timedelta(hours=2)
START = datetime(2026, 10, 1)
END = datetime(2026, 10, 2)
RUN_AFTER = datetime(2026, 10, 2, 0, 5)


def test_real_interval_is_widened_by_lookback() -> None:
    window = plan_window(START, END, RUN_AFTER, LOOKBACK, None)
    assert window == Window(datetime(2026, 9, 30, 22, 0), END)


def test_end_comes_from_the_interval_not_from_run_after() -> None:
    late_run = datetime(2026, 10, 5, 13, 0)
    assert plan_window(START, END, late_run, LOOKBACK, None).end == END


def test_zero_lookback_is_the_interval_itself() -> None:
    assert plan_window(START, END, RUN_AFTER, timedelta(0), None) == Window(START, END)


def test_reaches_back_to_an_earlier_watermark() -> None:
    watermark = datetime(2026, 9, 28, 6, 30)
    window = plan_window(START, END, RUN_AFTER, LOOKBACK, watermark)
    assert window == Window(datetime(2026, 9, 28, 4, 30), END)


def test_watermark_equal_to_interval_start_changes_nothing() -> None:
    assert plan_window(START, END, RUN_AFTER, LOOKBACK, START) == plan_window(START, END, RUN_AFTER, LOOKBACK, None)


def test_watermark_later_than_interval_start_is_ignored() -> None:
    """A backfill of an old interval must not skip it because later runs moved the watermark."""
    later = datetime(2026, 10, 20)
    assert plan_window(START, END, RUN_AFTER, LOOKBACK, later) == Window(START - LOOKBACK, END)


def test_manual_run_without_interval_goes_from_watermark_to_run_after() -> None:
    watermark = datetime(2026, 10, 1, 12, 0)
    run_after = datetime(2026, 10, 3, 9, 15)
    window = plan_window(None, None, run_after, LOOKBACK, watermark)
    assert window == Window(datetime(2026, 10, 1, 10, 0), run_after)


def test_manual_run_on_first_contact_starts_at_the_epoch() -> None:
    run_after = datetime(2026, 10, 3, 9, 15)
    window = plan_window(None, None, run_after, LOOKBACK, None)
    # epoch minus lookback is clamped to the epoch
    assert window == Window(datetime(1970, 1, 1), run_after)


def test_window_never_starts_before_the_epoch() -> None:
    window = plan_window(datetime(1970, 1, 1, 1), datetime(1970, 1, 2), RUN_AFTER, LOOKBACK, None)
    assert window.start == EPOCH


def test_zero_width_interval_is_treated_like_no_interval() -> None:
    """A cron trigger timetable gives start == end: the window still covers everything since the watermark."""
    point = datetime(2026, 10, 2)
    watermark = datetime(2026, 10, 1, 0, 0)
    window = plan_window(point, point, point, LOOKBACK, watermark)
    assert window == Window(watermark - LOOKBACK, point)
    assert window.start < window.end
    assert plan_window(point, point, point, LOOKBACK, None) == Window(EPOCH, point)


def test_start_only_interval_is_treated_like_no_interval() -> None:
    run_after = datetime(2026, 10, 3)
    watermark = datetime(2026, 10, 2)
    assert plan_window(START, None, run_after, LOOKBACK, watermark) == Window(watermark - LOOKBACK, run_after)


@pytest.mark.parametrize("tz", [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
def test_aware_interval_becomes_naive_utc(tz: timezone) -> None:
    start_utc, end_utc = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC)
    window = plan_window(start_utc.astimezone(tz), end_utc.astimezone(tz), RUN_AFTER, LOOKBACK, None)
    assert window == Window(datetime(2026, 9, 30, 22, 0), datetime(2026, 10, 2))
    assert window.start.tzinfo is None
    assert window.end.tzinfo is None


def test_aware_interval_compares_with_a_naive_utc_watermark() -> None:
    cest = timezone(timedelta(hours=2))
    start = datetime(2026, 10, 1, 2, 0, tzinfo=cest)  # 00:00 UTC
    end = datetime(2026, 10, 2, 2, 0, tzinfo=cest)
    # 23:30 UTC the day before: earlier than the interval start in UTC (though not in local wall time)
    watermark = datetime(2026, 9, 30, 23, 30)
    window = plan_window(start, end, RUN_AFTER, timedelta(0), watermark)
    assert window == Window(watermark, datetime(2026, 10, 2))
    # 01:00 UTC: later than the interval start in UTC, so ignored
    window = plan_window(start, end, RUN_AFTER, timedelta(0), datetime(2026, 10, 1, 1, 0))
    assert window == Window(datetime(2026, 10, 1), datetime(2026, 10, 2))


def test_aware_run_after_becomes_naive_utc() -> None:
    run_after = datetime(2026, 10, 3, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    window = plan_window(None, None, run_after, LOOKBACK, datetime(2026, 10, 2))
    assert window == Window(datetime(2026, 10, 1, 22, 0), datetime(2026, 10, 3, 9, 0))
    assert window.end.tzinfo is None


def test_consecutive_daily_intervals_tile_with_overlap_only_lookback() -> None:
    days = [datetime(2026, 10, 1) + i * DAY for i in range(8)]
    windows = []
    watermark = None
    for start, end in zip(days, days[1:], strict=False):
        windows.append(plan_window(start, end, end + timedelta(minutes=5), LOOKBACK, watermark))
        watermark = end  # each run commits its interval end
    assert windows[0].start == days[0] - LOOKBACK
    assert windows[-1].end == days[-1]
    for before, after in zip(windows, windows[1:], strict=False):
        assert after.start < before.end  # no gap
        assert before.end - after.start == LOOKBACK  # overlap is exactly the lookback
        assert after.end - before.end == DAY


def test_backfill_tiles_even_when_the_watermark_is_already_past_the_range() -> None:
    watermark = datetime(2026, 11, 1)
    days = [datetime(2026, 10, 1) + i * DAY for i in range(4)]
    windows = [plan_window(s, e, RUN_AFTER, LOOKBACK, watermark) for s, e in zip(days, days[1:], strict=False)]
    assert windows == [Window(s - LOOKBACK, e) for s, e in zip(days, days[1:], strict=False)]


def test_skipped_interval_is_covered_by_the_next_run() -> None:
    """Day 2 failed: day 3 reaches back to the last committed watermark (end of day 1)."""
    d1, d2, d3, d4 = (datetime(2026, 10, 1) + i * DAY for i in range(4))
    first = plan_window(d1, d2, d2, LOOKBACK, None)
    third = plan_window(d3, d4, d4, LOOKBACK, first.end)
    assert third == Window(d2 - LOOKBACK, d4)
    assert third.start < first.end


def test_as_dict_is_iso_text() -> None:
    assert Window(START, END).as_dict() == {"start": "2026-10-01T00:00:00", "end": "2026-10-02T00:00:00"}


def test_a_run_an_asset_started_ends_where_the_other_flow_got_and_never_before_the_watermark() -> None:
    """``run_after`` is then the end of the other flow's window (``pipeline.dags.triggered_until``)."""
    watermark = datetime(2026, 10, 3)
    assert plan_window(None, None, datetime(2026, 10, 4), LOOKBACK, watermark) == Window(
        watermark - LOOKBACK, datetime(2026, 10, 4)
    )
    behind = datetime(2026, 10, 2)  # the other flow is behind this one: only the lookback is read again
    assert plan_window(None, None, behind, LOOKBACK, watermark) == Window(watermark - LOOKBACK, watermark)
