"""The checks truesync generates from the configuration, evaluated column by column with pandas.

A generated check is a Great Expectations expectation by its name and arguments: its report
entry and Data Docs are GX's. What this module replaces is GX's validation of it. Validating
a batch through GX builds a metric graph per expectation and call and computes each null
mask several times; in the anchor benchmark that cost 2 of 11 seconds, while the same
answers are one vectorised line per expectation in GX's own pandas metric providers. And
the check is never built as a GX object, so a process that runs only generated checks does
not import GX for them (1.7 s and 128 MiB as installed; ``quality.gx``). User expectations
(``expectations:`` in the YAML, any of GX's) are still validated by GX.

Each rule below is GX 1.x's pandas rule, and ``tests/integration/test_quality.py`` holds
every type against GX's own result on batches with nulls, NaN, unicode and repeats:

- *null* is what pandas calls missing: ``None``, ``NaN``, ``NaT``; an empty text is a value;
- a column check other than not-null never judges a null value (GX filters them out);
- a pattern is searched for in the value as text (``str.contains``): it matches whole values only if anchored;
- a range is inclusive unless ``strict_min``/``strict_max`` say otherwise, compared as floats;
- compound uniqueness skips rows whose every column is null, and flags every copy of a
  combination that appears twice;
- a pair of columns skips rows where both are null; a value against a null differs;
- uniqueness flags every copy of a repeated value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

NOT_NULL = "expect_column_values_to_not_be_null"
IN_SET = "expect_column_values_to_be_in_set"
MATCHES = "expect_column_values_to_match_regex"
BETWEEN = "expect_column_values_to_be_between"
COMPOUND_UNIQUE = "expect_compound_columns_to_be_unique"
PAIR_EQUAL = "expect_column_pair_values_to_be_equal"
UNIQUE = "expect_column_values_to_be_unique"

Rule = Callable[[dict[str, Any], pd.DataFrame], pd.Series]  # arguments and a batch to its unexpected rows (a mask)


@dataclass(frozen=True)
class Expectation:
    """A generated check as GX names it: the expectation's snake_case name and its arguments, as
    GX's ``configuration.kwargs`` would hold them (no null argument, bounds as floats)."""

    expectation_type: str
    kwargs: dict[str, Any]


def expectation(name: str, **kwargs: Any) -> Expectation:
    """A generated expectation of one of the types this module evaluates."""
    if name not in _RULES:
        raise ValueError(f"truesync does not evaluate '{name}' itself")
    given = {k: v for k, v in kwargs.items() if v is not None}
    bounds = {k: float(given[k]) for k in ("min_value", "max_value") if k in given}
    return Expectation(name, given | bounds)


def unexpected(check: Expectation, frame: pd.DataFrame) -> pd.Series:
    """The rows of ``frame`` that ``check`` finds unexpected, as GX's pandas engine would."""
    return _RULES[check.expectation_type](check.kwargs, frame)


def _not_null(kwargs: dict[str, Any], frame: pd.DataFrame) -> pd.Series:
    return frame[kwargs["column"]].isna()


def _in_set(kwargs: dict[str, Any], frame: pd.DataFrame) -> pd.Series:
    column = frame[kwargs["column"]]
    return column.notna() & ~column.isin(kwargs["value_set"])


def _matches(kwargs: dict[str, Any], frame: pd.DataFrame) -> pd.Series:
    column = frame[kwargs["column"]]
    present = column.notna()
    found = column[present].astype(str).str.contains(kwargs["regex"], regex=True)
    return present & ~found.reindex(frame.index, fill_value=True).astype(bool)


def _between(kwargs: dict[str, Any], frame: pd.DataFrame) -> pd.Series:
    values = frame[kwargs["column"]].astype(float)  # GX reads the bounds as floats too
    inside = pd.Series(True, index=frame.index)
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None:
        inside &= values > low if kwargs.get("strict_min") else values >= low
    if high is not None:
        inside &= values < high if kwargs.get("strict_max") else values <= high
    return values.notna() & ~inside


def _compound_unique(kwargs: dict[str, Any], frame: pd.DataFrame) -> pd.Series:
    columns = frame[list(kwargs["column_list"])]
    judged = columns.notna().any(axis=1)
    repeated = columns[judged].duplicated(keep=False)
    return repeated.reindex(frame.index, fill_value=False).astype(bool)


def _pair_equal(kwargs: dict[str, Any], frame: pd.DataFrame) -> pd.Series:
    a, b = frame[kwargs["column_A"]], frame[kwargs["column_B"]]
    judged = a.notna() | b.notna()
    return judged & (a.isna() | b.isna() | (a != b))


def _unique(kwargs: dict[str, Any], frame: pd.DataFrame) -> pd.Series:
    column = frame[kwargs["column"]]
    present = column.notna()
    return present & column.where(present).duplicated(keep=False)


_RULES: dict[str, Rule] = {
    NOT_NULL: _not_null,
    IN_SET: _in_set,
    MATCHES: _matches,
    BETWEEN: _between,
    COMPOUND_UNIQUE: _compound_unique,
    PAIR_EQUAL: _pair_equal,
    UNIQUE: _unique,
}
