"""Text every store keeps as it is: which keys can name a record, and escapes for the rest.

A source can send text no database of the store holds: U+0000 (PostgreSQL's text cannot
hold it) and lone surrogates (not Unicode at all; a JSON source can send ``"\\udc80"``, and
no driver can encode it as UTF-8). Keys also have a length: the store's key columns hold
``KEY_LENGTH`` characters. A key outside these rules cannot name its record in the ledger
or the queue, so extract holds the record as ``invalid`` (check ``storable_key``) under a
name made from a hash of the key; messages and flagged values show such text escaped.
"""

from __future__ import annotations

import hashlib
import re

import pandas as pd

KEY_LENGTH = 255  # characters the store's key columns hold (``store/schema.py``)
BAD_KEY_PREFIX = "bad-key:"
SHOWN_KEY = 60  # characters of an unstorable key a message shows
_UNSTORABLE = "[\x00\ud800-\udfff]"
_UNSTORABLE_TEXT = re.compile(_UNSTORABLE)


def escaped(value: str) -> str:
    """``value`` with U+0000 and lone surrogates spelled as Python escapes (``\\x00``, ``\\udc80``)."""
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def escaped_column(values: pd.Series) -> pd.Series:
    """A column of text (and nulls) with every value a store cannot hold escaped; the rest unchanged."""
    text = values.dropna()
    text = text[[isinstance(value, str) for value in text]]
    odd = text.index[text.str.contains(_UNSTORABLE, regex=True)]
    if not len(odd):
        return values
    values = values.copy()
    values[odd] = text[odd].map(escaped)
    return values


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot name a record in the store, or None when it can."""
    if len(key) > KEY_LENGTH:
        return f"it is {len(key):,} characters long; a key holds at most {KEY_LENGTH}"
    if "\x00" in key:
        return "it holds U+0000 (NUL), which PostgreSQL cannot store"
    if escaped(key) != key:
        return "it holds a lone surrogate, which is not Unicode text"
    return None


def unstorable_keys(keys: pd.Series) -> pd.Series:
    """For each key that cannot name a record, why (indexed like ``keys``; empty when all can).

    Nearly every chunk holds none, so the whole chunk is asked first, in one pass: its longest key
    and one search of all keys joined. Only a chunk with one is asked key by key.
    """
    text = keys.dropna()
    if not len(text) or (max(map(len, text)) <= KEY_LENGTH and not _UNSTORABLE_TEXT.search("".join(text))):
        return text.iloc[:0]
    odd = text[text.str.len().gt(KEY_LENGTH) | text.str.contains(_UNSTORABLE, regex=True)]
    return odd.map(key_problem)


def shown_key(key: str) -> str:
    """A key as a message shows it: quoted and escaped, cut after ``SHOWN_KEY`` characters."""
    cut = key[:SHOWN_KEY]
    return repr(cut) + (f"… ({len(key):,} characters)" if len(key) > SHOWN_KEY else "")


def stand_in_key(key: str) -> str:
    """The name a record with an unstorable key is held under: ``bad-key:`` and a hash of the key."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return BAD_KEY_PREFIX + digest
