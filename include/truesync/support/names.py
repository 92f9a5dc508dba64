"""Names the configuration accepts: table and column names, and member paths into nested records."""

from __future__ import annotations

import re
from collections.abc import Callable

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


KEY_JOIN = "+"  # joins the names of a composite key's fields or columns: ``order_id+line_no``


def key_names(value: str | list[str], check: Callable[[str], str]) -> str:
    """A key as written (one name, or a list of two or more) as one text, names joined by ``KEY_JOIN``.

    Each name must pass ``check``; no name may appear twice. ``[order_id, line_no]`` is
    ``order_id+line_no``, a name no field or column can have.
    """
    names = value.split(KEY_JOIN) if isinstance(value, str) else list(value)
    if not names:
        raise ValueError("a key names at least one field")
    for name in names:
        check(name)
    if len(set(names)) < len(names):
        raise ValueError(f"key {names} names a field twice")
    return KEY_JOIN.join(names)
