"""Digests: a database's own hash of a row's compared columns (``docs/design.md``, "Digests").

A full compare with a ledger asks each side for every key's digest instead of its row, so the
records nobody touched never travel to Python. A digest is the MD5 of the columns' text, each
spelled as its length in characters, a colon and the text, or ``~`` when null: that spelling
reads back in one way only, so two rows with the same digest hold the same text in every column.
A column both sides hold as a number, a date or a time (``plain_type``) is spelled as its text
and a ``|`` instead, since that text never holds a ``|`` nor starts with ``~``: the spelling still
reads back in one way only, as long as both sides spell the same columns so. The text is the
database's own (``CAST … AS TEXT``/``CHAR``), as its session spells it.

Only databases with an MD5 function give digests: PostgreSQL, MariaDB and MySQL.
"""

from __future__ import annotations

import operator
from collections.abc import Collection
from functools import reduce
from typing import Any

from sqlalchemy import Date, DateTime, Integer, Numeric, Text, cast, func
from sqlalchemy.types import TypeEngine

from truesync.connectors.base import DIGEST_COLUMN

DIALECTS = ("postgresql", "mysql", "mariadb")
PLAIN_TYPES = (Integer, Numeric, Date, DateTime)  # their text: digits, signs, '.', '-', ':', ' ', 'e', NaN, Infinity


def plain_type(kind: TypeEngine[Any]) -> bool:
    """Whether a column of this type spells every value with no ``|`` and no leading ``~``: numbers, dates, times."""
    return isinstance(kind, PLAIN_TYPES)


def row_digest(columns: list[Any], plain: Collection[str] = ()) -> Any:
    """The digest of ``columns`` as one SQL expression, labelled ``DIGEST_COLUMN``; the columns named in
    ``plain`` are spelled as their text and a ``|``, without their length (``plain_type``).

    A column's part is null exactly when the column is: text joined to a null is null, by ``||`` on
    PostgreSQL and ``CONCAT`` on MariaDB and MySQL alike. So ``COALESCE`` spells a null as ``~``
    with no ``CASE``, and PostgreSQL joins the parts with ``||``, where its ``concat()`` looks up
    each argument's output function row by row: on 1.5M rows of six columns, 2.1 s instead of 2.6 s,
    about as fast as the ``md5(ROW(…)::text)`` of PostgreSQL alone (1.7–2.0 s). A plain column saves
    its length's two casts: 2.5 s instead of 2.9 s there, with three of the six plain.
    """
    parts = []
    for column in columns:
        text = cast(column, Text)
        spelled = text + "|" if column.name in plain else cast(func.char_length(text), Text) + ":" + text
        parts.append(func.coalesce(spelled, "~"))
    return func.md5(reduce(operator.add, parts)).label(DIGEST_COLUMN)
