"""Digests: a database's own hash of a row's compared columns (``docs/design.md``, "Digests").

A full compare with a ledger asks each side for every key's digest instead of its row, so the
records nobody touched never travel to Python. A digest is the MD5 of the columns' text, each
spelled as its length in characters, a colon and the text, or ``~`` when null: that spelling
reads back in one way only, so two rows with the same digest hold the same text in every column.
The text is the database's own (``CAST … AS TEXT``/``CHAR``), as its session spells it.

Only databases with an MD5 function give digests: PostgreSQL, MariaDB and MySQL.
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

from sqlalchemy import Text, cast, func

from truesync.connectors.base import DIGEST_COLUMN

DIALECTS = ("postgresql", "mysql", "mariadb")


def row_digest(columns: list[Any]) -> Any:
    """The digest of ``columns`` as one SQL expression, labelled ``DIGEST_COLUMN``.

    A column's part is null exactly when the column is: text joined to a null is null, by ``||`` on
    PostgreSQL and ``CONCAT`` on MariaDB and MySQL alike. So ``COALESCE`` spells a null as ``~``
    with no ``CASE``, and PostgreSQL joins the parts with ``||``, where its ``concat()`` looks up
    each argument's output function row by row: on 1.5M rows of six columns, 2.1 s instead of 2.6 s,
    about as fast as the ``md5(ROW(…)::text)`` of PostgreSQL alone (1.7–2.0 s).
    """
    parts = []
    for column in columns:
        text = cast(column, Text)
        parts.append(func.coalesce(cast(func.char_length(text), Text) + ":" + text, "~"))
    return func.md5(reduce(operator.add, parts)).label(DIGEST_COLUMN)
