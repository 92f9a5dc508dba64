"""Durations as the configuration writes them: ``90s``, ``30m``, ``2h``, ``1d``, ``1w`` or seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: Any) -> timedelta:
    """Accept ``90s``, ``30m``, ``2h``, ``1d``, ``1w`` or a number of seconds."""
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        duration = timedelta(seconds=value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a duration such as 30m, 2h or 1d")
        duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if duration < timedelta(0):
        raise ValueError(f"'{value}' is a negative duration")
    return duration


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]  # a model field written as a duration
