"""A run's window: the half-open range of source changes it extracts.

It comes from the Airflow data interval, never from wall-clock time, widened backwards
by the flow's ``lookback``, and reaching back to the last committed watermark when that
is earlier, so a failed or skipped interval never becomes a silent gap
(``docs/design.md``, "Windows, schedules and backfill").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from truesync.core.canonical import EPOCH


@dataclass(frozen=True)
class Window:
    start: datetime  # naive UTC, inclusive
    end: datetime  # naive UTC, exclusive

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def naive_utc(value: datetime) -> datetime:
    """Airflow hands out aware datetimes; the systems and the store keep naive UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def plan_window(
    interval_start: datetime | None,
    interval_end: datetime | None,
    run_after: datetime,
    lookback: timedelta,
    watermark: datetime | None,
) -> Window:
    """The window of one run.

    With a real data interval ``[s, e)``: ``[min(s, watermark) - lookback, e)``.
    Without one (a manual run with no logical date, a run an Asset started, or a zero-width
    interval): everything since the last committed watermark (or since 1970 on first contact)
    up to ``run_after`` (the run's time, or where the flow that started it got to), widened by
    ``lookback``; never ending before the watermark.
    """
    if interval_start is not None and interval_end is not None and interval_start < interval_end:
        start, end = naive_utc(interval_start), naive_utc(interval_end)
        if watermark is not None and watermark < start:
            start = watermark
    else:
        start = watermark if watermark is not None else EPOCH
        end = max(naive_utc(interval_end or run_after), start)
    return Window(max(EPOCH, start - lookback), end)
