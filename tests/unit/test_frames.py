"""Frames to and from database rows: every value kept as the driver gave it, nulls as ``None``."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text

from truesync.support.frames import from_rows, iso_text, map_values

VALUES = [
    (1, "a", decimal.Decimal("12.50"), dt.date(2026, 11, 1), [1, 2], {"x": 1}),
    (2**70, None, None, None, (3, 4), b"\x00"),
]
COLUMNS = ["n", "s", "d", "day", "seq", "other"]


def test_rows_become_columns_of_the_same_objects() -> None:
    frame = from_rows(VALUES, COLUMNS)
    assert list(frame.columns) == COLUMNS
    assert set(frame.dtypes) == {np.dtype(object)}
    assert [tuple(row) for row in frame.itertuples(index=False)] == VALUES
    assert frame.at[1, "n"] == 2**70 and frame.at[0, "seq"] == [1, 2]  # never widened to a float or split


def test_no_rows_is_an_empty_frame_with_the_columns() -> None:
    frame = from_rows([], COLUMNS)
    assert frame.empty and list(frame.columns) == COLUMNS and set(frame.dtypes) == {np.dtype(object)}


def test_sqlalchemy_rows_read_as_their_tuples() -> None:
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT 1 AS a, 'x' AS b UNION ALL SELECT NULL, 'y'")).all()
    frame = from_rows(rows, ["a", "b"])
    assert frame["a"].tolist() == [1, None] and frame["b"].tolist() == ["x", "y"]


def test_map_values_skips_nulls_and_keeps_objects() -> None:
    values = pd.Series([1, None, np.nan, 3], dtype=object)
    assert map_values(values, str).tolist() == ["1", None, None, "3"]
    assert map_values(pd.Series([1, 2], dtype=object), lambda v: None if v == 1 else v).tolist() == [None, 2]
    assert map_values(pd.Series(["a"], dtype=object), str).dtype == object


def test_iso_text_spells_each_time_and_date_with_nulls_kept_apart() -> None:
    """Repeated, distinct and null times, and a column of nulls only: each spelled as ``strftime`` would."""
    first = dt.datetime(2026, 11, 1, 9, 30, 0, 5)
    stamps = [first, None, dt.datetime(1999, 12, 31), first, dt.datetime(2026, 11, 1, 23, 59, 59, 999999), None]
    times = pd.Series(pd.to_datetime(stamps))
    expected = [None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%f") for t in stamps]
    assert iso_text(times).tolist() == expected
    assert iso_text(times, "D").tolist() == [None if t is None else t.date().isoformat() for t in stamps]
    assert iso_text(pd.Series(pd.to_datetime([None, None]))).tolist() == [None, None]
    assert iso_text(times.iloc[:0]).tolist() == []
