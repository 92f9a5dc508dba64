"""Digests: a database's own hash of a row's compared columns (``docs/design.md``, "Digests").

A full compare with a ledger asks each side for every key's digest instead of its row, so the
records nobody touched never travel to Python. A digest is the MD5 of the columns' text, each
spelled as its length in characters, a colon and the text, or ``~`` when null: that spelling
reads back in one way only, so two rows with the same digest hold the same text in every column.
The text is the database's own (``CAST … AS TEXT``/``CHAR``), as its session spells it.

Only databases with an MD5 function give digests: PostgreSQL, MariaDB and MySQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, case, cast, func, literal

from truesync.connectors.base import DIGEST_COLUMN

DIALECTS = ("postgresql", "mysql", "mariadb")


def row_digest(columns: list[Any]) -> Any:
    """The digest of ``columns`` as one SQL expression, labelled ``DIGEST_COLUMN``."""
    parts = []
    for column in columns:
        text = cast(column, Text)
        parts.append(case((column.is_(None), literal("~")), else_=func.concat(func.char_length(text), ":", text)))
    return func.md5(func.concat(*parts)).label(DIGEST_COLUMN)
