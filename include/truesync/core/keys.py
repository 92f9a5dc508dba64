"""Record keys: the one text that names a record, whether its key is one field or several.

An entity's key may be a composite of two or more fields (``key: [order_id, line_no]``,
``docs/design.md``, "Composite keys"). The store, the ledger, the exception queue, the
reports and the dashboard name a record by one text all the same, its *record key*: the
parts' canonical texts joined by ``SEPARATOR`` (``1001|2``), a separator or backslash
inside a part escaped by a backslash (``a\\|b|2``). A single-field key is its field's text,
unchanged. A record with any part null has no key.

Systems hold the parts in their own columns: a connector splits a record key back into
its parts (``split``) to find or write a row, and names a row it refused by the parts as it
sent them (``system_keys``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from truesync.config import EntityMapping

SEPARATOR = "|"
_ESCAPE = "\\"


def join(parts: list[pd.Series]) -> pd.Series:
    """Each row's record key from its parts' texts (one Series per part, in key order); None where a part is."""
    if len(parts) == 1:
        return parts[0]
    values = zip(*(p.astype(object).where(p.notna(), None).tolist() for p in parts), strict=True)
    joined = [None if None in row else record_key([str(v) for v in row]) for row in values]
    return pd.Series(joined, index=parts[0].index, dtype=object)


def record_key(parts: list[str]) -> str:
    """The record key of one record's parts (texts, none null), as ``join`` spells it."""
    if len(parts) == 1:
        return parts[0]
    return SEPARATOR.join(p.replace(_ESCAPE, _ESCAPE * 2).replace(SEPARATOR, _ESCAPE + SEPARATOR) for p in parts)


def split(key: str, count: int) -> list[str]:
    """The ``count`` parts of a record key, unescaped; a key of another number of parts is a ``ValueError``."""
    if count == 1:
        return [key]
    parts, current, chars = [], [], iter(key)
    for char in chars:
        if char == _ESCAPE:
            current.append(next(chars, _ESCAPE))
        elif char == SEPARATOR:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    if len(parts) != count:
        raise ValueError(f"record key '{key}' has {len(parts)} part(s), not {count}")
    return parts


def split_all(keys: list[str], fields: list[str]) -> dict[str, list[str]]:
    """Field -> its part of each record key, in the order of ``keys``."""
    if len(fields) == 1:
        return {fields[0]: list(keys)}
    parts = [split(key, len(fields)) for key in keys]
    return {field: [p[position] for p in parts] for position, field in enumerate(fields)}


def system_keys(rows: list[Mapping[str, Any]], mapping: EntityMapping) -> list[str]:
    """The record key of each row as written to a system, from its key columns' values."""
    return [record_key([str(row[c]) for c in mapping.key_columns]) for row in rows]
