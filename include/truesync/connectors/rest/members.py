"""Reading an item's members: member paths, envelopes and change times in ISO 8601 or epoch numbers.

A mapping names a member by a path: names joined by ``.``, and ``[n]`` for the n-th element
of a list (``metadata.invoice_id``, ``refunds.data[0].amount``). A path that meets a missing
member, a null, a list too short or a value of another shape reads as null: the record's
checks then flag the field (a required one is ``not_null``), and the item is never dropped.

An endpoint with ``record_path`` lists envelopes, such as Stripe's events: the record is the
object at that path inside each item, and the mapping's key and fields are read inside it.
The change time (the mapping's ``cursor``) is the envelope's own member: when the change
happened, not when the record was made. An envelope without an object at ``record_path`` is
an API that does not answer as configured, and fails the read.

Change times and window bounds are written in the endpoint's ``time_format``: ISO 8601,
or whole seconds or milliseconds since the epoch. The engine gets every change time as ISO
text in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from truesync.config import EntityMapping
from truesync.connectors.rest.session import BadResponse
from truesync.connectors.rest.settings import EndpointConfig, TimeFormat
from truesync.core.canonical import EPOCH, parse_utc_naive

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
UNIT = {"iso": timedelta(microseconds=1), "epoch_s": timedelta(seconds=1), "epoch_ms": timedelta(milliseconds=1)}


@cache
def steps(path: str) -> tuple[str | int, ...]:
    """A path's steps: member names, and element positions for ``[n]``."""
    return tuple(name if name else int(position) for name, position in _STEP.findall(path))


def member(obj: Any, path: str) -> Any:
    """The value at ``path`` inside ``obj``, or None where the path leads nowhere."""
    for step in steps(path):
        if isinstance(step, int):
            obj = obj[step] if isinstance(obj, list) and step < len(obj) else None
        else:
            obj = obj.get(step) if isinstance(obj, dict) else None
        if obj is None:
            return None
    return obj


def parse_time(value: Any, time_format: TimeFormat) -> datetime | None:
    """A change time as naive UTC; None when absent or not written in the endpoint's format."""
    if time_format == "iso":
        return parse_utc_naive(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    scale = 1 if time_format == "epoch_s" else 1000
    try:
        return EPOCH + timedelta(seconds=number / scale)
    except (OverflowError, ValueError):  # out of range, or not a number (NaN)
        return None


def time_param(value: datetime, time_format: TimeFormat) -> str:
    """A window bound as the API reads it. Epoch bounds are whole units: a start is rounded up, never down."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if time_format == "iso":
        return aware.isoformat()
    naive = aware.replace(tzinfo=None)
    units, rest = divmod(naive - EPOCH, UNIT[time_format])
    return str(units + (1 if rest else 0))


class ItemReader:
    """How one endpoint's items become a mapping's columns: envelope, member paths, change time."""

    def __init__(self, endpoint: EndpointConfig, mapping: EntityMapping, where: str, envelope: bool = True) -> None:
        self.mapping, self.where = mapping, where
        self.record_path = endpoint.record_path if envelope else None
        self.time_format = endpoint.time_format
        self.id_field = endpoint.id_field

    def record(self, item: dict[str, Any]) -> dict[str, Any]:
        """The record an item carries: the item itself, or the object at ``record_path`` of an envelope."""
        if self.record_path is None:
            return item
        found = member(item, self.record_path)
        if not isinstance(found, dict):
            raise BadResponse(f"{self.where}: item '{item.get(self.id_field)}' holds no object at '{self.record_path}'")
        return found

    def key(self, item: dict[str, Any]) -> Any:
        return member(self.record(item), self.mapping.key)

    def change_time(self, item: dict[str, Any]) -> datetime | None:
        """The item's change time; an envelope's own member, not the record's."""
        if self.mapping.cursor is None:
            return None
        return parse_time(member(item, self.mapping.cursor), self.time_format)

    def row(self, item: dict[str, Any], columns: list[str]) -> list[Any]:
        """The item's values for ``columns``; the change time as ISO text in UTC (as written, when unreadable)."""
        record = self.record(item)
        values = [member(record, c) for c in columns]
        cursor = self.mapping.cursor
        if cursor in columns:
            raw = member(item, cursor)
            ts = None if self.time_format == "iso" else parse_time(raw, self.time_format)
            values[columns.index(cursor)] = raw if ts is None else ts.isoformat()
        return values
