"""Mapping between a system's columns and the canonical text form, both ways."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from truesync.config import EntityConfig, EntityMapping, FieldSpec, MinorUnits
from truesync.core.canonical import as_text, to_canonical, to_system
from truesync.support.frames import records

ENTITY = EntityConfig(
    key="item_id",
    fields={
        "item_id": FieldSpec(type="string"),
        "name": FieldSpec(type="string", required=True),
        "note": FieldSpec(type="string"),
        "qty": FieldSpec(type="integer"),
        "price": FieldSpec(type="decimal", scale=2),
        "weight": FieldSpec(type="decimal", scale=3),
        "active": FieldSpec(type="boolean"),
        "born": FieldSpec(type="date"),
        "seen_at": FieldSpec(type="datetime"),
        "status": FieldSpec(type="string"),
    },
)
MAPPING = EntityMapping(
    table="items",
    key="item_no",
    cursor="changed",
    fields={
        "item_id": "item_no",
        "name": "title",
        "note": "memo",
        "qty": "amount",
        "price": "unit_price",
        "weight": "kg",
        "active": "is_active",
        "born": "dob",
        "seen_at": "last_seen",
        "status": "status_code",
    },
    codes={"status": {"P": "pending", "S": "shipped", "7": "payment_failed"}},
)
ALL = list(ENTITY.fields)


def one_field(field: str, values: list[object]) -> pd.DataFrame:
    """A chunk in system columns: one row per value of ``field``, every other column valid."""
    n = len(values)
    raw = pd.DataFrame(
        {"item_no": [f"k{i}" for i in range(n)], "title": ["widget"] * n, "changed": ["2026-10-01 10:00"] * n},
        dtype=object,
    )
    raw[MAPPING.fields[field]] = pd.Series(values, dtype=object)
    return raw


def canon(field: str, values: list[object]):
    return to_canonical(one_field(field, values), MAPPING, ENTITY, ["item_id", "name", field])


def converted(field: str, values: list[object]) -> list[object]:
    result = canon(field, values)
    assert result.errors.empty, result.errors.to_dict("records")
    return [None if pd.isna(v) else v for v in result.records[field]]


# ---------------------------------------------------------------- one normal spelling per type


def test_string_is_text() -> None:
    assert converted("note", ["abc", 5, None, "", " padded "]) == ["abc", "5", None, "", " padded "]


def test_integer_spellings() -> None:
    assert converted("qty", [12, "12", "12.0", 12.0, decimal.Decimal("12"), -3, "0", None]) == [
        "12",
        "12",
        "12",
        "12",
        "12",
        "-3",
        "0",
        None,
    ]


def test_a_column_of_whole_numbers_reads_as_the_same_values_spelled_as_text() -> None:
    """A driver's ints are spelled at once (``str``); the texts and mixtures go value by value: same result."""
    ints = [12, -3, 0, 2**70, np.int64(7), None]
    assert converted("qty", ints) == converted("qty", ["12", "-3", "0", str(2**70), "7", None])
    assert converted("qty", [1, 2, 3]) == ["1", "2", "3"]
    flags = canon("qty", [True, 1])  # bools are not whole numbers, beside ints or not
    assert flags.errors["check_name"].tolist() == ["valid_integer"]
    assert canon("qty", [True, False]).errors["check_name"].tolist() == ["valid_integer", "valid_integer"]


def test_decimal_spellings_normalise_to_the_scale() -> None:
    values = [12.5, "12.50", decimal.Decimal("12.5"), 12, "12.5000", "-0.5", None]
    assert converted("price", values) == ["12.50", "12.50", "12.50", "12.00", "12.50", "-0.50", None]


def test_decimal_rounds_to_the_scale() -> None:
    assert converted("price", ["12.499", "12.504", 0.1 + 0.2]) == ["12.50", "12.50", "0.30"]


def test_decimal_scale_is_per_field() -> None:
    assert converted("weight", [1.5, "2", decimal.Decimal("0.1234")]) == ["1.500", "2.000", "0.123"]


def test_a_column_of_decimals_reads_as_the_same_values_spelled_as_text() -> None:
    """A driver's Decimals at the field's scale are spelled at once (``str``); other exponents, scientific
    spellings and mixtures go value by value: the same result as from their texts."""
    d = decimal.Decimal
    values = [d("12.50"), d("-0.00"), d("0.01"), d("12345678901234567.89"), d("12.5"), d("12.505"), d("1E+3"),
              d("1.2E+5"), d("12"), d("0E-7"), None]  # fmt: skip
    expected = ["12.50", "-0.00", "0.01", "12345678901234567.89", "12.50", "12.51", "1000.00", "120000.00", "12.00",
                "0.00", None]  # fmt: skip
    assert converted("price", values) == expected
    assert converted("price", [None if v is None else str(v) for v in values]) == expected
    assert converted("price", [*values[:3], 7]) == [*expected[:3], "7.00"]


@pytest.mark.parametrize("scale", [0, 1, 2, 4, 7])
def test_decimals_spelled_at_once_equal_each_one_quantized(scale: int) -> None:
    """Random Decimals of every exponent around the scale, their scientific spellings among them (``1.2E+5``
    ends in four characters after its point, as a value at scale 4 does)."""
    rng = np.random.default_rng(scale)
    d = decimal.Decimal
    values = [
        d(int(c)).scaleb(int(e))
        for c, e in zip(rng.integers(-(10**6), 10**6, 2000), rng.integers(-9, 7, 2000), strict=True)
    ]
    entity = EntityConfig(key="item_id", fields={"item_id": FieldSpec(), "qty": FieldSpec(type="decimal", scale=scale)})
    raw = pd.DataFrame({"item_no": [f"k{i}" for i in range(len(values))], "amount": values}, dtype=object)
    spelled = to_canonical(raw, MAPPING, entity, ["item_id", "qty"]).records["qty"].tolist()
    quantum = d(1).scaleb(-scale)
    assert spelled == [str(v.quantize(quantum, rounding=decimal.ROUND_HALF_UP)) for v in values]


def test_decimal_with_scale_zero() -> None:
    entity = EntityConfig(key="item_id", fields={"item_id": FieldSpec(), "qty": FieldSpec(type="decimal", scale=0)})
    raw = pd.DataFrame({"item_no": ["a", "b"], "amount": ["7.0", 8]}, dtype=object)
    out = to_canonical(raw, MAPPING, entity, ["item_id", "qty"])
    assert list(out.records["qty"]) == ["7", "8"]


def test_boolean_spellings() -> None:
    truthy = [True, "true", "TRUE", "t", "1", 1, "yes", "Y", " Yes "]
    falsy = [False, "false", "F", "0", 0, "no", "N"]
    assert converted("active", [*truthy, *falsy, None]) == ["true"] * len(truthy) + ["false"] * len(falsy) + [None]


def test_date_spellings() -> None:
    values = [dt.date(2024, 1, 31), "2024-01-31", dt.datetime(2024, 1, 31, 23, 59), "2024-01-31T10:00:00", None]
    assert converted("born", values) == ["2024-01-31"] * 4 + [None]


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("born", [dt.date(2024, 1, 31), dt.date(1, 1, 1), dt.date(9999, 12, 31), None]),
        ("born", [dt.datetime(2024, 1, 31, 23, 59), dt.datetime(2024, 2, 1, 0, 30, tzinfo=dt.UTC), None]),
        (
            "seen_at",
            [
                dt.datetime(2026, 10, 1, 10, 0, 0, 5),
                dt.datetime(2026, 10, 1, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
                dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
                None,
            ],
        ),
        ("seen_at", [pd.Timestamp("2026-10-01 12:00", tz="Europe/Berlin"), pd.Timestamp("2026-10-01 12:00")]),
        ("born", [20240131, None]),  # a number is read by its text, never as a count since 1970
    ],
)
def test_a_column_of_date_or_time_objects_reads_as_the_same_values_spelled_as_text(
    field: str, values: list[object]
) -> None:
    spelled = [None if v is None else str(v) for v in values]
    assert converted(field, values) == converted(field, spelled)


def test_datetime_spellings_become_naive_utc_with_microseconds() -> None:
    values = [
        "2026-10-01 10:00",
        "2026-10-01T10:00:00",
        "2026-10-01T12:00:00+02:00",
        dt.datetime(2026, 10, 1, 10, 0),
        dt.datetime(2026, 10, 1, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        pd.Timestamp("2026-10-01 12:00", tz="Europe/Berlin"),
        None,
    ]
    assert converted("seen_at", values) == ["2026-10-01T10:00:00.000000"] * 6 + [None]
    assert converted("seen_at", ["2026-10-01T10:00:00.123456"]) == ["2026-10-01T10:00:00.123456"]


def test_equal_values_from_different_systems_compare_equal() -> None:
    """A price stored as 12.5 in one system and '12.50' in another is the same canonical record."""
    a = to_canonical(
        pd.DataFrame({"item_no": ["x"], "title": ["w"], "unit_price": [12.5], "is_active": [1]}, dtype=object),
        MAPPING,
        ENTITY,
        ["item_id", "name", "price", "active"],
    )
    b = to_canonical(
        pd.DataFrame(
            {"item_no": ["x"], "title": ["w"], "unit_price": ["12.50"], "is_active": ["true"]},
            dtype=object,
        ),
        MAPPING,
        ENTITY,
        ["item_id", "name", "price", "active"],
    )
    pd.testing.assert_frame_equal(a.records, b.records)


def test_records_keep_the_input_index_and_only_the_requested_fields() -> None:
    raw = one_field("qty", [1, 2])
    raw.index = pd.Index([10, 20])
    out = to_canonical(raw, MAPPING, ENTITY, ["item_id", "qty"])
    assert list(out.records.columns) == ["item_id", "qty"]
    assert list(out.records.index) == [10, 20]
    assert list(out.source_ts.index) == [10, 20]


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("field", "column", "kind", "bad"),
    [
        ("qty", "amount", "integer", "12.5"),
        ("qty", "amount", "integer", "twelve"),
        ("price", "unit_price", "decimal", "12,50"),
        ("price", "unit_price", "decimal", "abc"),
        ("active", "is_active", "boolean", "maybe"),
        ("active", "is_active", "boolean", "2"),
        ("born", "dob", "date", "2024-02-30"),
        ("born", "dob", "date", "yesterday"),
        ("seen_at", "last_seen", "datetime", "garbage"),
        ("seen_at", "last_seen", "datetime", "2026-13-01 10:00"),
    ],
)
def test_bad_value_is_an_error_row_and_good_rows_are_unaffected(field: str, column: str, kind: str, bad: str) -> None:
    good = {"qty": "7", "price": "1.5", "active": "yes", "born": "2024-01-31", "seen_at": "2026-10-01 10:00"}[field]
    clean = canon(field, [good, good])
    result = canon(field, [good, bad, good])
    assert list(result.errors.index) == [1]
    error = result.errors.loc[1]
    assert error["check_name"] == f"valid_{kind}"
    assert error["field"] == field
    assert column in error["reason"]
    assert bad in error["reason"]
    assert pd.isna(result.records.at[1, field])
    assert result.records.at[1, "item_id"] == "k1"
    # the good rows are mapped exactly as in a clean chunk
    assert list(result.records.loc[[0, 2], field]) == list(clean.records[field])


def test_only_the_first_error_of_a_row_is_reported() -> None:
    raw = one_field("qty", ["x", "3"])
    raw["unit_price"] = ["y", "z"]
    out = to_canonical(raw, MAPPING, ENTITY, ["item_id", "name", "qty", "price"])
    assert out.errors.to_dict("index") == {
        0: {
            "check_name": "valid_integer",
            "field": "qty",
            "reason": "cannot read column 'amount' as integer: 'x'",
            "value": "x",
        },
        1: {
            "check_name": "valid_decimal",
            "field": "price",
            "reason": "cannot read column 'unit_price' as decimal: 'z'",
            "value": "z",
        },
    }


def test_clean_chunk_has_no_errors() -> None:
    raw = pd.DataFrame(
        {
            "item_no": ["a", "b"],
            "title": ["w", "v"],
            "memo": [None, "n"],
            "amount": [1, None],
            "unit_price": ["1.00", None],
            "kg": [None, 2],
            "is_active": [True, None],
            "dob": [None, "2000-02-29"],
            "last_seen": ["2026-01-01", None],
            "status_code": ["P", None],
            "changed": ["2026-10-01", "2026-10-01"],
        },
        dtype=object,
    )
    out = to_canonical(raw, MAPPING, ENTITY, ALL)
    assert out.errors.empty
    assert list(out.errors.columns) == ["check_name", "field", "reason", "value"]
    assert out.records.loc[0].to_dict()["status"] == "pending"


# ---------------------------------------------------------------- codes


def test_codes_translate_to_canonical_values() -> None:
    assert converted("status", ["P", "S", 7, "7", None]) == [
        "pending",
        "shipped",
        "payment_failed",
        "payment_failed",
        None,
    ]


def test_unknown_code_is_a_known_code_error() -> None:
    result = canon("status", ["P", "X9", "S"])
    assert list(result.errors.index) == [1]
    error = result.errors.loc[1]
    assert error["check_name"] == "known_code"
    assert error["field"] == "status"
    assert "X9" in error["reason"]
    assert "status_code" in error["reason"]
    assert pd.isna(result.records.at[1, "status"])
    assert list(result.records.loc[[0, 2], "status"]) == ["pending", "shipped"]


def test_canonical_value_is_not_accepted_as_a_code() -> None:
    result = canon("status", ["pending"])
    assert result.errors.loc[0, "check_name"] == "known_code"


# ---------------------------------------------------------------- required


def test_required_null_is_a_not_null_error() -> None:
    raw = one_field("note", ["a", "b", "c"])
    raw["title"] = ["w", None, "v"]
    out = to_canonical(raw, MAPPING, ENTITY, ["item_id", "name", "note"])
    assert list(out.errors.index) == [1]
    error = out.errors.loc[1]
    assert error["check_name"] == "not_null"
    assert error["field"] == "name"
    assert "name" in error["reason"] and "title" in error["reason"]


def test_the_key_is_required_even_if_not_declared_so() -> None:
    assert ENTITY.fields["item_id"].required is False
    raw = one_field("note", ["a", "b"])
    raw["item_no"] = ["k0", None]
    out = to_canonical(raw, MAPPING, ENTITY, ["item_id", "note"])
    assert out.errors.to_dict("index") == {
        1: {
            "check_name": "not_null",
            "field": "item_id",
            "reason": "required field 'item_id' (column 'item_no') is null",
            "value": None,
        }
    }


def test_optional_null_is_no_error() -> None:
    out = canon("note", [None, None])
    assert out.errors.empty


def test_required_column_absent_from_the_chunk_flags_every_row() -> None:
    raw = one_field("note", ["a", "b"]).drop(columns=["title"])
    out = to_canonical(raw, MAPPING, ENTITY, ["item_id", "name", "note"])
    assert list(out.errors["check_name"]) == ["not_null", "not_null"]
    assert set(out.errors["field"]) == {"name"}


def test_bad_value_in_a_required_field_reports_the_cast_not_not_null() -> None:
    entity = EntityConfig(
        key="item_id", fields={"item_id": FieldSpec(), "qty": FieldSpec(type="integer", required=True)}
    )
    raw = pd.DataFrame({"item_no": ["a"], "amount": ["many"]}, dtype=object)
    out = to_canonical(raw, MAPPING, entity, ["item_id", "qty"])
    assert out.errors.loc[0, "check_name"] == "valid_integer"


# ---------------------------------------------------------------- change timestamps


def test_source_ts_from_the_cursor_column_in_naive_utc() -> None:
    raw = one_field("note", ["a", "b", "c", "d"])
    raw["changed"] = ["2026-10-01 10:00", "2026-10-01T12:00:00+02:00", None, "not a time"]
    ts = to_canonical(raw, MAPPING, ENTITY, ["item_id", "note"]).source_ts
    assert ts.iloc[0] == pd.Timestamp("2026-10-01 10:00")
    assert ts.iloc[1] == pd.Timestamp("2026-10-01 10:00")
    assert pd.isna(ts.iloc[2]) and pd.isna(ts.iloc[3])
    assert ts.dt.tz is None


def test_source_ts_without_cursor_is_unknown() -> None:
    mapping = MAPPING.model_copy(update={"cursor": None})
    ts = to_canonical(one_field("note", ["a"]), mapping, ENTITY, ["item_id", "note"]).source_ts
    assert ts.isna().all()


# ---------------------------------------------------------------- back to a system


TYPES: dict[str, type | None] = {
    "item_no": str,
    "title": str,
    "memo": None,
    "amount": int,
    "unit_price": decimal.Decimal,
    "kg": float,
    "is_active": bool,
    "dob": dt.date,
    "last_seen": dt.datetime,
    "status_code": str,
}


def canonical_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame([{f: r.get(f) for f in ALL} for r in rows], index=[r["item_id"] for r in rows], dtype=object)


FULL = {
    "item_id": "a",
    "name": "widget",
    "note": "n",
    "qty": "3",
    "price": "12.50",
    "weight": "1.250",
    "active": "true",
    "born": "2024-01-31",
    "seen_at": "2026-10-01T10:00:00.123456",
    "status": "shipped",
}


def system_rows(*args: Any) -> tuple[list[dict[str, object]], pd.DataFrame]:
    """``to_system``'s rows as dicts, the way a connector that writes row by row reads them."""
    rows, errors = to_system(*args)
    return records(rows), errors


def test_to_system_gives_a_frame_of_the_systems_columns_on_the_canonical_index() -> None:
    frame = canonical_frame([FULL, {**FULL, "item_id": "b", "status": "lost"}])
    rows, errors = to_system(frame, MAPPING, TYPES, ["item_id", "qty", "status"])
    assert list(rows.columns) == ["item_no", "amount", "status_code"] and rows.index.tolist() == ["a", "b"]
    assert rows.dtypes.tolist() == [object] * 3 and errors.index.tolist() == ["b"]


def test_to_system_converts_to_python_types_per_column() -> None:
    rows, errors = system_rows(
        canonical_frame([FULL, {**FULL, "item_id": "b", "qty": "-4", "active": "false"}]), MAPPING, TYPES, ALL
    )
    assert errors.empty
    first, second = rows
    assert first == {
        "item_no": "a",
        "title": "widget",
        "memo": "n",
        "amount": 3,
        "unit_price": decimal.Decimal("12.50"),
        "kg": 1.25,
        "is_active": True,
        "dob": dt.date(2024, 1, 31),
        "last_seen": dt.datetime(2026, 10, 1, 10, 0, 0, 123456),
        "status_code": "S",
    }
    assert type(first["amount"]) is int
    assert isinstance(first["unit_price"], decimal.Decimal)
    assert type(first["kg"]) is float
    assert type(first["is_active"]) is bool
    assert isinstance(first["last_seen"], dt.datetime)
    assert type(first["dob"]) is dt.date
    assert second["amount"] == -4 and second["is_active"] is False


def test_to_system_nulls_become_none() -> None:
    row = {"item_id": "a", "name": "w"}
    rows, errors = system_rows(canonical_frame([row]), MAPPING, TYPES, ALL)
    assert errors.empty
    assert rows[0]["item_no"] == "a"
    assert all(rows[0][c] is None for c in ("memo", "unit_price", "kg", "is_active", "dob", "last_seen", "status_code"))


def test_to_system_reverses_codes() -> None:
    frame = canonical_frame(
        [{**FULL, "item_id": k, "status": s} for k, s in (("a", "pending"), ("b", "shipped"), ("c", "payment_failed"))]
    )
    rows, errors = system_rows(frame, MAPPING, TYPES, ["item_id", "status"])
    assert errors.empty
    assert [r["status_code"] for r in rows] == ["P", "S", "7"]
    assert set(rows[0]) == {"item_no", "status_code"}


def test_to_system_unmappable_value_is_a_known_code_error() -> None:
    frame = canonical_frame([{**FULL, "item_id": "a"}, {**FULL, "item_id": "b", "status": "lost"}])
    rows, errors = system_rows(frame, MAPPING, TYPES, ["item_id", "status"])
    assert list(errors.index) == ["b"]
    assert errors.loc["b", "check_name"] == "known_code"
    assert errors.loc["b", "field"] == "status"
    assert "lost" in errors.loc["b", "reason"]
    assert rows[0]["status_code"] == "S"
    assert rows[1]["status_code"] is None


def test_round_trip_system_to_canonical_and_back() -> None:
    frame = canonical_frame(
        [FULL, {"item_id": "b", "name": "gadget", "qty": "0", "active": "false", "status": "pending"}]
    )
    rows, errors = system_rows(frame, MAPPING, TYPES, ALL)
    assert errors.empty
    raw = pd.DataFrame(rows, dtype=object)
    back = to_canonical(raw, MAPPING, ENTITY, ALL)
    assert back.errors.empty
    got = back.records.set_axis(frame.index).astype(object)
    got = got.where(got.notna(), None)
    pd.testing.assert_frame_equal(got, frame)


# ---------------------------------------------------------------- regressions found in review


def test_numbers_keep_every_digit() -> None:
    assert converted("price", ["12345678901234567.89"]) == ["12345678901234567.89"]
    assert converted("qty", [str(2**60 + 1)]) == [str(2**60 + 1)]


@pytest.mark.parametrize("bad", ["inf", "-Infinity", "nan", decimal.Decimal("Infinity"), decimal.Decimal("-Infinity")])
def test_non_finite_decimals_are_errors(bad: object) -> None:
    good = decimal.Decimal("1.00") if isinstance(bad, decimal.Decimal) else "1.00"  # a column of Decimals, or of text
    result = canon("price", [good, bad])
    assert list(result.errors["check_name"]) == ["valid_decimal"]
    assert result.records["price"].iloc[0] == "1.00"


def test_a_numeric_nan_is_refused_as_not_a_number_never_read_as_a_null() -> None:
    """pandas counts ``Decimal("NaN")`` (PostgreSQL's numeric NaN) as missing: it must never become a null."""
    result = canon("price", [decimal.Decimal("1.00"), decimal.Decimal("NaN"), None])
    assert result.errors.to_dict("records") == [
        {"check_name": "valid_decimal", "field": "price", "reason": "cannot read column 'unit_price' as decimal: 'NaN'",
         "value": "NaN"}
    ]  # fmt: skip
    assert result.errors.index.tolist() == [1]
    assert result.records["price"].tolist() == ["1.00", None, None]
    required = EntityConfig(
        key="item_id", fields={"item_id": FieldSpec(), "qty": FieldSpec(type="integer", required=True)}
    )
    raw = pd.DataFrame({"item_no": ["a", "b"], "amount": [decimal.Decimal("NaN"), None]}, dtype=object)
    flagged = to_canonical(raw, MAPPING, required, ["item_id", "qty"]).errors
    assert flagged["check_name"].tolist() == ["valid_integer", "not_null"]
    shown = as_text(pd.Series([decimal.Decimal("NaN"), None, decimal.Decimal("1.5")], dtype=object))
    assert shown.tolist() == ["NaN", None, "1.5"]  # what the checks see: the source's text, not a null
    assert as_text(pd.Series([decimal.Decimal("NaN"), 7], dtype=object)).tolist() == ["NaN", "7"]  # mixed-integer


def test_a_float_nan_object_is_refused_too_but_a_nan_in_a_column_of_floats_is_a_null() -> None:
    """A connector gives a null as None, so a ``float`` NaN among its objects is the source's value
    (PostgreSQL's ``double precision`` NaN, JSON's ``NaN``): refused like a numeric NaN. In a column
    of floats (dtype ``float64``) pandas' NaN is the null itself, and stays one."""
    result = canon("price", [2.5, float("nan"), None, float("inf")])
    assert result.errors["reason"].tolist() == [
        "cannot read column 'unit_price' as decimal: 'NaN'",
        "cannot read column 'unit_price' as decimal: 'inf'",
    ]
    assert result.errors.index.tolist() == [1, 3] and result.records["price"].tolist() == ["2.50", None, None, None]
    assert canon("qty", [3.0, np.nan]).errors["reason"].tolist() == ["cannot read column 'amount' as integer: 'NaN'"]
    assert as_text(pd.Series([1.5, np.nan, None], dtype=object)).tolist() == ["1.5", "NaN", None]
    raw = pd.DataFrame({"item_no": ["a", "b"], "title": ["w", "w"], "unit_price": [2.5, np.nan]})
    floats = to_canonical(raw, MAPPING, ENTITY, ["item_id", "price"])
    assert floats.errors.empty and floats.records["price"].tolist() == ["2.50", None]
    assert as_text(pd.Series([1.5, np.nan])).tolist() == ["1.5", None]


def test_dates_with_mixed_offsets_do_not_break_the_chunk() -> None:
    result = canon("born", ["2024-01-31", "2024-01-31T23:30:00-05:00", "31/02/1990"])
    assert list(result.records["born"])[:2] == ["2024-01-31", "2024-02-01"]
    assert list(result.errors["check_name"]) == ["valid_date"]


def test_to_system_keeps_integers_next_to_nulls() -> None:
    rows, _ = system_rows(canonical_frame([FULL, {**FULL, "item_id": "b", "qty": None}]), MAPPING, TYPES, ALL)
    assert [type(r["amount"]) for r in rows] == [int, type(None)]


def test_to_system_reads_a_column_of_pandas_str_dtype_with_its_nulls_as_none() -> None:
    """pandas 3 infers its ``str`` dtype for a list of texts (key parts assigned to a frame), and holds a
    null there as NaN: it is written as None, never as ``Decimal('NaN')`` or a failed date parse."""
    frame = canonical_frame([FULL, {**FULL, "item_id": "b"}]).astype({"price": "str", "born": "str", "qty": "str"})
    frame.loc["b", ["price", "born", "qty"]] = None
    rows, errors = system_rows(frame, MAPPING, TYPES, ALL)
    assert errors.empty
    assert (rows[0]["unit_price"], rows[0]["dob"], rows[0]["amount"]) == (
        decimal.Decimal("12.50"),
        dt.date(2024, 1, 31),
        3,
    )
    assert (rows[1]["unit_price"], rows[1]["dob"], rows[1]["amount"]) == (None, None, None)


def test_to_system_sends_the_canonical_text_to_a_column_of_any_type() -> None:
    rows, _ = system_rows(canonical_frame([FULL]), MAPPING, {**TYPES, "amount": None, "unit_price": str}, ALL)
    assert (rows[0]["amount"], rows[0]["unit_price"]) == ("3", "12.50")


# ---------------------------------------------------------------- amounts in minor units

PAYMENT = EntityConfig(
    key="payment_id",
    fields={"payment_id": FieldSpec(type="string"), "amount": FieldSpec(type="decimal", scale=2),
            "currency": FieldSpec(type="string")},
)  # fmt: skip
IN_MINOR_UNITS = EntityMapping(
    table="charges", key="id", fields={"payment_id": "id", "amount": "amount", "currency": "currency"},
    codes={"currency": {"usd": "USD", "jpy": "JPY", "kwd": "KWD", "isk": "ISK", "abc": "ABC", "xxx": "XXX"}},
    minor_units={"amount": MinorUnits(currency="currency", exponents={"isk": 2})},
)  # fmt: skip


def payments(amounts: list[object], currencies: list[object]) -> pd.DataFrame:
    ids = [f"ch_{n}" for n in range(len(amounts))]
    return pd.DataFrame({"id": ids, "amount": amounts, "currency": currencies}, dtype=object)


def test_minor_units_take_the_scale_of_each_rows_currency() -> None:
    raw = payments([1200, "1200", 1200, 12345, 199900, None], ["usd", "jpy", "kwd", "isk", "usd", "usd"])
    result = to_canonical(raw, IN_MINOR_UNITS, PAYMENT, list(PAYMENT.fields))
    assert result.errors.empty, result.errors.to_dict("records")
    assert result.records["amount"].tolist() == ["12.00", "1200.00", "1.20", "123.45", "1999.00", None]
    assert result.records["currency"].tolist() == ["USD", "JPY", "KWD", "ISK", "USD", "USD"]


def test_a_fraction_of_a_minor_unit_or_an_unlisted_currency_is_an_error_naming_field_and_value() -> None:
    raw = payments([12.5, 1200, 1200, "12x", 1234, 5], ["usd", "abc", None, "usd", "kwd", "xxx"])
    result = to_canonical(raw, IN_MINOR_UNITS, PAYMENT, list(PAYMENT.fields))
    errors = result.errors.sort_index()
    assert errors["check_name"].tolist() == ["valid_decimal"] * 6
    assert errors["field"].tolist() == ["amount"] * 6
    assert errors["reason"].tolist() == [
        "cannot read column 'amount' as minor units at scale 2: '12.5'",
        "column 'amount' counts minor units of currency 'ABC', which has none in ISO 4217",
        "column 'amount' counts minor units of currency '(none)', which has none in ISO 4217",
        "cannot read column 'amount' as minor units at scale 2: '12x'",
        "cannot read column 'amount' as minor units at scale 2: '1234'",
        "column 'amount' counts minor units of currency 'XXX', which has none in ISO 4217",
    ]
    assert result.records["amount"].isna().all()


def test_amounts_are_written_back_in_minor_units() -> None:
    canon_rows = pd.DataFrame({"payment_id": ["a", "b", "c"], "amount": ["12.00", "1200.00", "1.20"],
                               "currency": ["USD", "JPY", "KWD"]}, dtype=object)  # fmt: skip
    rows, errors = system_rows(
        canon_rows, IN_MINOR_UNITS, {"id": str, "amount": int, "currency": str}, ["payment_id", "amount", "currency"]
    )
    assert errors.empty
    assert [(r["amount"], r["currency"]) for r in rows] == [(1200, "usd"), (1200, "jpy"), (1200, "kwd")]


def test_an_amount_that_is_not_a_whole_number_of_minor_units_is_not_written() -> None:
    canon_rows = pd.DataFrame({"payment_id": ["a", "b"], "amount": ["1200.50", "3.00"], "currency": ["JPY", "JPY"]},
                              dtype=object)  # fmt: skip
    fields = ["payment_id", "amount", "currency"]
    rows, errors = system_rows(canon_rows, IN_MINOR_UNITS, {"id": str, "amount": int, "currency": str}, fields)
    assert errors.loc[0, ["check_name", "field", "reason"]].tolist() == [
        "valid_decimal", "amount", "'amount' is not a whole number of minor units: '1200.50'",
    ]  # fmt: skip
    assert errors.index.tolist() == [0] and rows[1]["amount"] == 3


def test_a_number_longer_than_python_s_28_digits_is_spelled_in_full_and_one_past_1000_digits_refused() -> None:
    """Python's default decimal context (28 digits) failed the whole chunk on ``1E+100`` in a decimal field
    and rounded a long count of minor units. Numbers are exact up to ``money.DIGITS`` (1,000 digits, the
    widest ``numeric(p, s)`` PostgreSQL declares), for the target to take or refuse; a longer one is refused."""
    result = canon("price", [decimal.Decimal("1E+40"), "1e40", 1e30, "1e5000", decimal.Decimal("1E+999999"), "2.5"])
    assert result.records["price"].tolist() == ["1" + "0" * 40 + ".00"] * 2 + [
        "1" + "0" * 30 + ".00",
        None,
        None,
        "2.50",
    ]
    assert result.errors["reason"].tolist() == [
        "cannot read column 'unit_price' as decimal: '1e5000'",
        "cannot read column 'unit_price' as decimal: '1E+999999'",
    ]
    whole = canon("qty", ["1e40", "1e5000"])  # str() of a 5,001-digit int would fail: Python stops at 4,300
    assert whole.records["qty"].tolist() == ["1" + "0" * 40, None]
    assert whole.errors["reason"].tolist() == ["cannot read column 'amount' as integer: '1e5000'"]
    count = "1234567890" * 4  # a 40-digit count of cents, scaled exactly
    result = to_canonical(
        payments([count, "1" + "0" * 1200], ["usd", "usd"]), IN_MINOR_UNITS, PAYMENT, list(PAYMENT.fields)
    )
    assert result.records["amount"].tolist() == [count[:-2] + "." + count[-2:], None]
    assert result.errors["check_name"].tolist() == ["valid_decimal"]
    rows, errors = system_rows(result.records.iloc[:1], IN_MINOR_UNITS, {"id": str, "amount": int, "currency": str},
                               ["payment_id", "amount", "currency"])  # fmt: skip
    assert errors.empty and rows[0]["amount"] == int(count)
