"""Names the configuration accepts: table and column names, and member paths into nested records."""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEMBER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*$")


def check_name(value: str) -> str:
    """A plain name: letters, digits and underscores, not starting with a digit."""
    if not _NAME.match(value):
        raise ValueError(f"'{value}' is not a valid name (letters, digits, underscore)")
    return value


def check_member(value: str) -> str:
    """A name, or a member path into nested records (``metadata.invoice_id``, ``refunds.data[0].amount``)."""
    if not _MEMBER.match(value):
        raise ValueError(f"'{value}' is not a valid name or member path (names joined by '.', '[n]' for an element)")
    return value


def is_path(column: str) -> bool:
    """A member path reaches into nested records; a plain name does not."""
    return "." in column or "[" in column
