"""DataFrames to and from database rows, without pandas' per-cell boxing or per-row probing.

``DataFrame.to_dict("records")`` boxes every cell through a generic path; for the chunks
truesync writes (tens of thousands of rows, every run) building the dicts from column
lists is several times faster. Nulls (NaN, NaT, None) become ``None`` and timestamps
become ``datetime``, which every driver understands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd


def column_values(column: pd.Series) -> list[Any]:
    """One column as Python values: ``datetime`` for timestamps, ``None`` for nulls."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return [None if pd.isna(v) else v for v in column.dt.to_pydatetime()]
    values = column.astype(object).tolist()
    if column.hasnans:
        mask = column.isna().tolist()
        return [None if missing else v for v, missing in zip(values, mask, strict=True)]
    return values


def map_values(values: pd.Series, func: Callable[[Any], Any]) -> pd.Series:
    """``func`` over the non-null values, kept as Python objects; nulls and ``func``'s None become None.

    ``Series.map`` in pandas 3 infers a ``str`` dtype (Arrow) for text results, and each later
    step on the column converts it back, element by element.
    """
    given = values.to_numpy(dtype=object)
    missing = values.isna().to_numpy()
    if missing.any():
        out = [None if skip else func(v) for v, skip in zip(given, missing, strict=True)]
    else:
        out = list(map(func, given))
    return pd.Series(out, index=values.index, dtype=object)


def iso_text(times: pd.Series, unit: str = "us") -> pd.Series:
    """Naive timestamps as ISO 8601 text objects, None for NaT: ``unit`` ``D`` spells a date, ``us`` a
    time to the microsecond (``2026-11-01T09:30:00.000000``). numpy spells a column at once;
    ``strftime`` goes value by value. Each distinct value is spelled once: a column of dates
    repeats them (a year holds 366), and spelling costs ten times what finding repeats does.
    """
    codes, distinct = pd.factorize(times.to_numpy(dtype="datetime64[us]"), use_na_sentinel=False)
    spelled = np.datetime_as_string(distinct, unit=unit).astype(object)[codes]
    spelled[times.isna().to_numpy()] = None
    return pd.Series(spelled, index=times.index, dtype=object)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts keyed by column name."""
    names = [str(c) for c in frame.columns]
    columns = [column_values(frame[c]) for c in frame.columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def from_rows(rows: Sequence[Sequence[Any]], columns: list[str]) -> pd.DataFrame:
    """Query rows as a frame of Python objects, built column by column.

    ``pd.DataFrame(rows)`` probes every row for ``dtype`` before giving up on it, and an
    SQLAlchemy ``Row`` answers each probe by raising and catching an exception. Each column
    is taken out of the rows by ``itemgetter`` (a loop in C); transposing them with
    ``zip(*rows)`` costs twice as much.
    """
    n = len(rows)
    data = {name: np.fromiter(map(itemgetter(i), rows), dtype=object, count=n) for i, name in enumerate(columns)}
    return pd.DataFrame(data, columns=columns, dtype=object)
