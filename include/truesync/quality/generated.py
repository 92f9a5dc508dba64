"""The checks truesync generates from the configuration, evaluated column by column with pandas.

A generated check is still a Great Expectations expectation: its name, arguments, report
entry and Data Docs are GX's. What this module replaces is GX's validation of it. Validating
a batch through GX builds a metric graph per expectation and call and computes each null
mask several times; in the anchor benchmark that cost 2 of 11 seconds, while the same
answers are one vectorised line per expectation in GX's own pandas metric providers. User
expectations (``expectations:`` in the YAML, any of GX's) are still validated by GX.

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
from typing import Any

import great_expectations.expectations as gxe
import pandas as pd

Rule = Callable[[Any, pd.DataFrame], pd.Series]  # an expectation and a batch to its unexpected rows (a mask)


def unexpected(expectation: Any, frame: pd.DataFrame) -> pd.Series:
    """The rows of ``frame`` that ``expectation`` finds unexpected, as GX's pandas engine would."""
    return _RULES[type(expectation)](expectation, frame)


def evaluates(expectation: Any) -> bool:
    """Whether ``unexpected`` knows this expectation's type (every one truesync generates)."""
    return type(expectation) in _RULES


def _not_null(expectation: Any, frame: pd.DataFrame) -> pd.Series:
    return frame[expectation.column].isna()


def _in_set(expectation: Any, frame: pd.DataFrame) -> pd.Series:
    column = frame[expectation.column]
    return column.notna() & ~column.isin(expectation.value_set)


def _matches(expectation: Any, frame: pd.DataFrame) -> pd.Series:
    column = frame[expectation.column]
    present = column.notna()
    found = column[present].astype(str).str.contains(expectation.regex, regex=True)
    return present & ~found.reindex(frame.index, fill_value=True).astype(bool)


def _between(expectation: Any, frame: pd.DataFrame) -> pd.Series:
    values = frame[expectation.column].astype(float)  # GX reads the bounds as floats too
    inside = pd.Series(True, index=frame.index)
    low, high = expectation.min_value, expectation.max_value
    if low is not None:
        inside &= values > low if expectation.strict_min else values >= low
    if high is not None:
        inside &= values < high if expectation.strict_max else values <= high
    return values.notna() & ~inside


def _compound_unique(expectation: Any, frame: pd.DataFrame) -> pd.Series:
    columns = frame[list(expectation.column_list)]
    judged = columns.notna().any(axis=1)
    repeated = columns[judged].duplicated(keep=False)
    return repeated.reindex(frame.index, fill_value=False).astype(bool)


def _pair_equal(expectation: Any, frame: pd.DataFrame) -> pd.Series:
    a, b = frame[expectation.column_A], frame[expectation.column_B]
    judged = a.notna() | b.notna()
    return judged & (a.isna() | b.isna() | (a != b))


def _unique(expectation: Any, frame: pd.DataFrame) -> pd.Series:
    column = frame[expectation.column]
    present = column.notna()
    return present & column.where(present).duplicated(keep=False)


_RULES: dict[type, Rule] = {
    gxe.ExpectColumnValuesToNotBeNull: _not_null,
    gxe.ExpectColumnValuesToBeInSet: _in_set,
    gxe.ExpectColumnValuesToMatchRegex: _matches,
    gxe.ExpectColumnValuesToBeBetween: _between,
    gxe.ExpectCompoundColumnsToBeUnique: _compound_unique,
    gxe.ExpectColumnPairValuesToBeEqual: _pair_equal,
    gxe.ExpectColumnValuesToBeUnique: _unique,
}
