"""``sandbox month`` counts records, not label rows: a key labelled with two allowed outcomes is one record."""

from __future__ import annotations

from datetime import date

import pandas as pd

from truesync.sandbox.month import Day, _FlowJudge

LABELS = pd.DataFrame(
    [
        # the collision twin: held where the target tells no case apart, created where it does
        ("customer", "c0000042", "mismatched", "quarantined", "False", "unique_match"),
        ("customer", "c0000042", "missing", "created", "False", ""),
        ("customer", "C0000007", "delayed", "updated", "False", ""),
        ("customer", "", "invalid", "quarantined", "False", "not_null"),
        ("customer", "", "invalid", "quarantined", "False", "not_null"),
    ],
    columns=["entity", "key", "class", "outcome", "overdue", "check"],
)


def _results(twin: tuple[str, str, str]) -> pd.DataFrame:
    rows = [
        ("customer", "c0000042", *twin, False),
        ("customer", "C0000007", "delayed", "updated", "", False),
        ("customer", "", "invalid", "quarantined", "not_null", False),
        ("customer", "", "invalid", "quarantined", "not_null", False),
    ]
    return pd.DataFrame(rows, columns=["entity", "key", "class", "outcome", "check_name", "overdue"])


def _judged(twin: tuple[str, str, str]) -> Day:
    day = Day(date(2026, 11, 1))
    _FlowJudge("webshop_to_accounting", "truesync_webshop_to_accounting", LABELS)._count(LABELS, _results(twin), day)
    return day


def test_a_key_labelled_twice_is_one_record_and_rows_without_a_key_each_one() -> None:
    day = _judged(("mismatched", "quarantined", "unique_match"))
    assert (day.records, day.wrong) == (4, 0)
    assert _judged(("missing", "created", "")).wrong == 0, "either label of the twin is right"


def test_a_twin_that_fits_neither_label_is_one_wrong_record() -> None:
    day = _judged(("in_sync", "unchanged", ""))
    assert (day.records, day.wrong) == (4, 1)
    assert len(day.examples) == 2  # both labels are shown beside what it got
