"""What the sandbox made of the web shop, for the systems built on top of it (``accounting``, ``compliance``).

``systems.build`` generates the shop's customers and orders with their scenarios and hands
them on as ``Made``; each later system starts from them and adds its rows and labels to the
sandbox's ``Rows``, whose labels name checks by the constants here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# The checks a label names: Great Expectations' expectations, and the engine's holds.
NOT_NULL = "expect_column_values_to_not_be_null"
IN_SET = "expect_column_values_to_be_in_set"
UNIQUE = "expect_compound_columns_to_be_unique"
REGEX = "expect_column_values_to_match_regex"
BETWEEN = "expect_column_values_to_be_between"
PARENT = "parent_exists"
SHARED_TIE = "shared_field_tie"
UNIQUE_MATCH = "unique_match"
UNSEEN = "unseen"  # a label's class saying no run of the flow may see the record (``Rows.label``'s ``also``)


class Rows(Protocol):
    """Where the sandbox gathers rows and labels (``systems.Rows``)."""

    tables: dict[tuple[str, str], list[dict[str, Any]]]

    def add(self, system: str, table: str, row: dict[str, Any]) -> None: ...

    def label(
        self,
        flow: str,
        entity: str,
        key: str | None,
        klass: str,
        when: datetime | None,
        check: str = "",
        also: tuple[tuple[str, str], ...] = (),
        outcome: str = "",
    ) -> None: ...


@dataclass
class Customer:
    """One shop customer as the sandbox made it: its scenario, values before the demo days, and change time."""

    key: str
    scenario: str
    base: dict[str, Any]
    ts: datetime
    old_ts: datetime


@dataclass
class Order:
    """One shop order as the sandbox made it (``src`` None: the shop does not hold it)."""

    key: str
    scenario: str
    parent: str
    base: dict[str, Any]
    src: dict[str, Any] | None
    ts: datetime
    old_ts: datetime


@dataclass
class Made:
    """The customers and orders the sandbox made, in order, for the later systems to start from."""

    customers: list[Customer] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
