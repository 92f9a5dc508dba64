"""One file's content as rows: the mapped columns, where each row was read, and why a row could not be.

Every row carries ``ORIGIN`` (``T07/2026-11-03.csv line 14``). A row that cannot be read
(a CSV row with more or fewer fields than the header, a JSON line that is not an object)
keeps only its origin and ``PROBLEM``; so does a whole file that cannot be decoded, or a
CSV file whose header lacks a mapped column (one row naming the columns it lacks). Such
rows have no key: they go to the exception queue, and the file's other rows load.
CSV has no null: an empty field is read as null. JSON numbers are read as ``Decimal``,
so an amount keeps every digit it was written with.
"""

from __future__ import annotations

import csv
import decimal
import io
import json
from typing import Any

import pandas as pd

from truesync.connectors.base import ORIGIN, PROBLEM
from truesync.connectors.file.settings import DatasetConfig


def read_rows(data: bytes, path: str, dataset: DatasetConfig, columns: list[str]) -> pd.DataFrame:
    """The rows of one file as a frame of objects: ``columns``, ``ORIGIN`` and ``PROBLEM``."""
    try:
        text = data.decode(dataset.encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        return _frame(columns, [_unread(columns, path, f"is not {dataset.encoding} text (byte {exc.start})")])
    if dataset.format == "jsonl":
        return _frame(columns, list(_jsonl_rows(text, path, columns)))
    return _frame(columns, list(_csv_rows(text, path, dataset.delimiter, columns)))


def _csv_rows(text: str, path: str, delimiter: str, columns: list[str]) -> Any:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            return
        missing = [c for c in columns if c not in header]
        if missing:
            has = ", ".join(header)
            yield _unread(columns, path, f"has a header without column(s) {', '.join(missing)} (it has {has})")
            return
        positions = [header.index(c) for c in columns]
        line = reader.line_num
        for row in reader:
            at, line = f"{path} line {line + 1}", reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                yield _unread(columns, at, f"has {len(row)} fields where the header has {len(header)}")
                continue
            yield [*(row[p] or None for p in positions), at, None]
    except csv.Error as exc:
        yield _unread(columns, f"{path} line {reader.line_num}", f"cannot be read as CSV from here on: {exc}")


def _jsonl_rows(text: str, path: str, columns: list[str]) -> Any:
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: JSON strings may hold U+2028
        if not line.strip():
            continue
        at = f"{path} line {number}"
        try:
            item = json.loads(line, parse_float=decimal.Decimal)
        except ValueError as exc:
            yield _unread(columns, at, f"is not JSON: {exc}")
            continue
        if not isinstance(item, dict):
            yield _unread(columns, at, "is not a JSON object")
            continue
        yield [*(item.get(c) for c in columns), at, None]


def _unread(columns: list[str], at: str, problem: str) -> list[Any]:
    """A row that could not be read: no values, only where it is and why."""
    return [*([None] * len(columns)), at, f"{at} {problem}"]


def _frame(columns: list[str], rows: list[list[Any]]) -> pd.DataFrame:
    names = [*columns, ORIGIN, PROBLEM]
    return pd.DataFrame(rows or None, columns=names, dtype=object)
