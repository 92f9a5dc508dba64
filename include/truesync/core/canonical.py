"""Mapping: a system's columns and codes become the canonical record, and back.

The canonical form of every field is text (``None`` for null) in one normal spelling per
type, so two systems that store a price as ``12.5`` and ``"12.50"`` compare equal and a
hash of the owned fields is stable across dialects. All work is column-wise on a chunk.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from truesync.config import CodeTable, EntityConfig, EntityMapping, FieldSpec, MinorUnits
from truesync.core import keys, money
from truesync.support.frames import iso_text, map_values

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
EPOCH = dt.datetime(1970, 1, 1)  # naive UTC, as every time in the engine; where a first window starts
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


@dataclass
class Canonical:
    """A chunk in canonical form, plus the first mapping error of each bad row."""

    records: pd.DataFrame  # one text column per canonical field, index as the input
    source_ts: pd.Series  # naive UTC change timestamps (NaT where unknown)
    errors: pd.DataFrame  # index subset of records: check_name, field, reason


def blank(index: pd.Index) -> pd.Series:
    return pd.Series([None] * len(index), index=index, dtype=object)


def to_canonical(raw: pd.DataFrame, mapping: EntityMapping, entity: EntityConfig, fields: list[str]) -> Canonical:
    """Map system columns to canonical text; unknown codes and bad values become errors.

    A composite key named among ``fields`` stands for its key fields. With every key field
    read, a composite's record key column (``core.keys``) is built from their canonical texts.
    """
    index = raw.index
    errors = _no_errors(index)
    records = pd.DataFrame(index=index)
    ts = to_utc_naive(raw[mapping.cursor] if mapping.cursor and mapping.cursor in raw else blank(index))
    wanted = list(dict.fromkeys(f for name in fields for f in (entity.key_fields if name == entity.key else [name])))
    for field in wanted:
        column = mapping.fields[field]
        values = raw[column] if column in raw else blank(index)
        if field in mapping.codes:
            values = _decode(values, mapping.codes[field], field, column, errors)
        if field in mapping.tables:
            values = _decode_table(values, mapping.tables[field], ts, field, column, errors)
        if field in mapping.minor_units:
            values = _from_minor(values, raw, mapping, entity, field, errors)
        spec = entity.fields[field]
        present = _given(values, spec)
        records[field] = _cast(values, present, spec, field, column, errors)
        if spec.required or field in entity.key_fields:
            reason = f"required field '{field}' (column '{column}') is null"
            _flag(errors, ~present, "not_null", field, reason)
    if entity.composite and set(entity.key_fields) <= set(wanted):
        records[entity.key] = keys.join([records[field] for field in entity.key_fields])
    return Canonical(records, ts, errors.dropna(subset=["check_name"]))


def _given(values: pd.Series, spec: FieldSpec) -> pd.Series:
    """Where a field's value is given, not null: in a number field a numeric ``NaN`` is given
    (``_numeric_nans``), and the cast refuses it as not a number, so it is never carried on as a null."""
    given = values.notna()
    return given | _numeric_nans(values, ~given) if spec.type in ("integer", "decimal") else given


def _numeric_nans(values: pd.Series, missing: pd.Series) -> pd.Series:
    """Which of the ``missing`` values (pandas' nulls) are a numeric ``NaN`` that a source holds as a value:
    a ``Decimal('NaN')`` (PostgreSQL's ``numeric`` NaN as psycopg2 reads it) or a ``float`` NaN (its
    ``double precision`` NaN, JSON's ``NaN``) in a column of objects. Connectors give a null as None, so
    a NaN object there is the source's; in a column of floats pandas' NaN is its null, and stays one.
    """
    found = pd.Series(False, index=values.index)
    if values.dtype == object and missing.any():
        found[missing] = [type(v) in _NAN_TYPES for v in values[missing]]
    return found


def keys_of(raw: pd.DataFrame, canon: Canonical, mapping: EntityMapping, key: str) -> pd.Series:
    """Each row's canonical key; a key the mapping cannot read keeps its own text, a null key stays null."""
    found = canon.records[key].copy()
    unread = found.isna()
    if unread.any():
        held = raw_keys(raw[unread], mapping)
        found[held.index] = held
    return found


def raw_keys(raw: pd.DataFrame, mapping: EntityMapping) -> pd.Series:
    """Each row's key as the system holds it: its key columns' text, joined; None where a part is null."""
    return keys.join([as_text(raw[column]) for column in mapping.key_columns])


def parse_utc_naive(value: Any) -> dt.datetime | None:
    """One ISO time as naive UTC (naive input is taken as UTC); None when absent or unreadable."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def to_utc_naive(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC (naive input is taken as UTC); unparseable become NaT."""
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_localize(None)


_TIME_KINDS = ("date", "datetime", "datetime64")  # what ``infer_dtype`` calls a column of date or time objects
_NO_NAN = ("integer", "boolean", "bytes", *_TIME_KINDS, "time", "timedelta", "timedelta64")  # kinds holding no NaN
_NAN_TYPES = (decimal.Decimal, float)


def read_times(values: pd.Series) -> pd.Series:
    """Values as naive UTC timestamps (``to_utc_naive``), each read as its text reads: a column of date
    or time objects is converted as it is, at once, which gives the same instants without spelling
    and parsing every value; any other column (text, numbers, a mix) is read from its text.
    """
    if pd.api.types.infer_dtype(values, skipna=True) in _TIME_KINDS:
        return to_utc_naive(values)
    return to_utc_naive(as_text(values))


def _no_errors(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({c: blank(index) for c in ("check_name", "field", "reason", "value")})


def _flag(
    errors: pd.DataFrame, mask: pd.Series, check: str, field: str, reason: str, value: pd.Series | None = None
) -> None:
    """Record an error on rows that have none yet: the first problem of a row is reported.

    ``value`` is the offending value (absent for a null), so reports can mask it inside the reason;
    ``{value}`` in ``reason`` is replaced by it. Reasons are built for the flagged rows only.
    """
    if not mask.any():
        return
    mask = mask & errors["check_name"].isna()
    if not mask.any():
        return
    errors.loc[mask, "check_name"] = check
    errors.loc[mask, "field"] = field
    if value is None:
        errors.loc[mask, "reason"] = reason
        return
    shown = as_text(value[mask])
    errors.loc[mask, "reason"] = [reason.format(value=v) for v in shown]
    errors.loc[mask, "value"] = shown


def _literal(before: str, name: str, after: str) -> str:
    """A reason template with a column or field name in it: braces in the name are kept as written."""
    return before + name.replace("{", "{{").replace("}", "}}") + after


def as_text(values: pd.Series) -> pd.Series:
    """Values as ``str`` objects, ``None`` for nulls (a numeric ``NaN`` is the text ``NaN``); text columns pass
    through unconverted."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    passed = kind in ("string", "empty")  # pandas skips a NaN object in finding the kind: it may be there still
    text = values.astype(object).where(values.notna(), None) if passed else map_values(values, str)
    if kind in _NO_NAN:  # no Decimal or float among the values: none is a numeric NaN
        return text
    nans = _numeric_nans(values, text.isna())
    return text.mask(nans, "NaN") if nans.any() else text


def _decode(values: pd.Series, codes: dict[str, str], field: str, column: str, errors: pd.DataFrame) -> pd.Series:
    text = as_text(values)
    decoded = map_values(text, codes.get)
    unknown = text.notna() & decoded.isna()
    _flag(errors, unknown, "known_code", field, _literal("unknown code '{value}' in column '", column, "'"), text)
    return decoded.where(~unknown, None)


def _decode_table(
    values: pd.Series, table: CodeTable, ts: pd.Series, field: str, column: str, errors: pd.DataFrame
) -> pd.Series:
    """Codes through a versioned table: a code is unknown to a record changed before its ``valid_from``."""
    text = as_text(values)
    decoded = map_values(text, table.values.get)
    unknown = text.notna() & decoded.isna()
    where = _literal("' in column '", column, f"' (code table {table.label})")
    _flag(errors, unknown, "known_code", field, "unknown code '{value}" + where, text)
    starts = {code: entry.valid_from for code, entry in table.codes.items() if entry.valid_from is not None}
    if starts:
        since = pd.to_datetime(map_values(text, starts.get))
        early = since.notna() & ts.notna() & (ts < since)  # an unreadable time is valid_datetime's
        _flag(
            errors, early, "known_code", field, "code '{value}" + where + " is not valid yet at the change time", text
        )
        unknown |= early
    return decoded.where(~unknown, None)


def _currencies(frame: pd.DataFrame, mapping: EntityMapping, field: str) -> pd.Series:
    """The currency of each row, as the system writes it (decoded when the mapping has codes for it)."""
    currency = mapping.minor_units[field].currency
    column = mapping.fields[currency]
    text = as_text(frame[column] if column in frame else blank(frame.index))
    return map_values(text, mapping.codes[currency].get) if currency in mapping.codes else text


def _from_minor(
    values: pd.Series, raw: pd.DataFrame, mapping: EntityMapping, entity: EntityConfig, field: str, errors: pd.DataFrame
) -> pd.Series:
    """Integer counts of minor units as decimal amounts, scaled by each row's currency.

    A currency without an ISO 4217 minor unit, a count that is not whole, and an amount
    with more digits than the field's scale (KWD's third) are errors: nothing is rounded.
    """
    units, column = mapping.minor_units[field], mapping.fields[field]
    reason = _literal("column '", column, "' counts minor units of currency '{value}', which has none in ISO 4217")
    places = _minor_digits(values, _currencies(raw, mapping, field), units, field, reason, errors)
    scale = decimal.Decimal(1).scaleb(-entity.fields[field].scale)
    amounts = pd.Series(
        [
            None if v is None or p is None else _exact(money.from_minor(v, p), scale)
            for v, p in zip(as_text(values), places, strict=True)
        ],
        index=values.index,
        dtype=object,
    )
    bad = values.notna() & places.notna() & amounts.isna()
    reason = _literal(
        "cannot read column '", column, f"' as minor units at scale {entity.fields[field].scale}: '{{value}}'"
    )
    _flag(errors, bad, "valid_decimal", field, reason, values)
    return amounts


def _minor_digits(
    values: pd.Series, currencies: pd.Series, units: MinorUnits, field: str, reason: str, errors: pd.DataFrame
) -> pd.Series:
    """Each row's minor-unit digits by its currency; a value whose currency has none is flagged with ``reason``."""
    places = map_values(currencies, functools.partial(money.digits, units))
    unknown = values.notna() & places.isna()
    _flag(errors, unknown, "valid_decimal", field, reason, currencies.where(currencies.notna(), "(none)"))
    return places


def _exact(amount: decimal.Decimal | None, quantum: decimal.Decimal) -> decimal.Decimal | None:
    """The amount when the field's scale holds it exactly, else None (and for more digits than ``money.DIGITS``)."""
    if amount is None:
        return None
    return amount if _quantized(amount, quantum) == amount else None


def _quantized(number: decimal.Decimal, quantum: decimal.Decimal) -> decimal.Decimal | None:
    """``number`` at ``quantum``'s exponent, half up; None when that takes more digits than ``money.DIGITS``."""
    try:
        return number.quantize(quantum, rounding=decimal.ROUND_HALF_UP, context=money.DIGITS)
    except decimal.InvalidOperation:
        return None


def _cast(
    values: pd.Series, present: pd.Series, spec: FieldSpec, field: str, column: str, errors: pd.DataFrame
) -> pd.Series:
    """``values`` (``present`` where not null) as canonical text; a value the type cannot read is flagged and nulled."""
    out, bad = _CASTS[spec.type](values, spec)
    bad = bad & present
    reason = _literal("cannot read column '", column, f"' as {spec.type}: '{{value}}'")
    _flag(errors, bad, f"valid_{spec.type}", field, reason, values)
    return out.where(present & ~bad, None).astype(object)


def _cast_string(values: pd.Series, spec: FieldSpec) -> tuple[pd.Series, pd.Series]:
    return as_text(values), pd.Series(False, index=values.index)


def _decimal(value: Any) -> decimal.Decimal | None:
    """Exact decimal of a value as its text reads, or None when it is not a finite number.

    A ``Decimal`` (what SQL drivers return for numeric columns) is taken as it is: its text
    would read back as the same number.
    """
    if type(value) is decimal.Decimal:
        return value if value.is_finite() else None
    try:
        number = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() else None


def _integer_text(value: Any) -> str | None:
    """An integer's canonical text, or None when the value is not a whole number (an ``int`` is one)."""
    if type(value) is int:
        return str(value)
    number = _decimal(value)
    if number is None or number.adjusted() >= money.DIGITS.prec or number != number.to_integral_value():
        return None
    return str(int(number))


def _decimal_text(quantum: decimal.Decimal, value: Any) -> str | None:
    """A number's canonical text at the field's scale (half up), or None when it is not a number or has more
    digits than ``money.DIGITS`` holds."""
    number = _decimal(value)
    exact = None if number is None else _quantized(number, quantum)
    return None if exact is None else str(exact)


def _cast_number(values: pd.Series, spec: FieldSpec) -> tuple[pd.Series, pd.Series]:
    """Numbers go through Decimal, not float: two different amounts never share a canonical text.

    One pass per value: read, check, and spell it.
    """
    if spec.type == "integer":
        whole = pd.api.types.infer_dtype(values, skipna=True) == "integer"  # ints (a driver's): spelled as they are
        shown = map_values(values, str if whole else _integer_text)
    else:
        shown = _decimal_texts(values, spec.scale)
    return shown, shown.isna()


def _decimal_texts(values: pd.Series, scale: int) -> pd.Series:
    """Each value's ``_decimal_text`` at ``scale``, a column of ``Decimal`` objects (what SQL drivers return
    for numeric columns) spelled at once where it can be.

    A ``Decimal`` whose ``str`` ends in a point and ``scale`` digits has exactly that exponent (its
    scientific spelling ends in an exponent), so quantizing at ``scale`` leaves it as it is: that
    text is the canonical one. A database's numeric column at the field's scale gives only such
    values. Every other value (another exponent, a scientific spelling, ``NaN``, any value at
    scale 0, a column of anything but ``Decimal``) is read, checked and spelled one by one.
    """
    exact = functools.partial(_decimal_text, decimal.Decimal(1).scaleb(-scale))
    if pd.api.types.infer_dtype(values, skipna=True) != "decimal":
        return map_values(values, exact)
    numbers, present = values.to_numpy(dtype=object), np.flatnonzero(values.notna().to_numpy())
    spelled = np.full(len(numbers), None, dtype=object)
    spelled[present] = list(map(str, numbers[present]))
    text = spelled[present].astype(str)
    point, digits = np.strings.rfind(text, "."), np.strings.isdigit(np.strings.slice(text, -scale, None))
    at_scale = (point >= 0) & (point == np.strings.str_len(text) - scale - 1) & digits
    again = present[~at_scale]
    spelled[again] = [exact(v) for v in numbers[again]]
    return pd.Series(spelled, index=values.index, dtype=object)


def _cast_boolean(values: pd.Series, spec: FieldSpec) -> tuple[pd.Series, pd.Series]:
    lower = as_text(values).str.strip().str.lower()
    out = map_values(lower, lambda v: "true" if v in _TRUE else "false" if v in _FALSE else None)
    return out, out.isna()


def _cast_date(values: pd.Series, spec: FieldSpec) -> tuple[pd.Series, pd.Series]:
    parsed = read_times(values)
    return iso_text(parsed, "D"), parsed.isna()


def _cast_datetime(values: pd.Series, spec: FieldSpec) -> tuple[pd.Series, pd.Series]:
    parsed = read_times(values)
    return iso_text(parsed), parsed.isna()


_CASTS = {
    "string": _cast_string,
    "integer": _cast_number,
    "decimal": _cast_number,
    "boolean": _cast_boolean,
    "date": _cast_date,
    "datetime": _cast_datetime,
}


def to_system(
    canon: pd.DataFrame, mapping: EntityMapping, types: dict[str, type | None], fields: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical text back to a system's columns, codes and Python types for writing.

    ``types`` is the Python type each column takes (a target's ``columns``); a column typed
    None, or by a type with no conversion, gets the canonical text. Returns the rows ready
    for the system, a frame of Python objects on ``canon``'s index named by the system's
    columns, and the errors of rows whose canonical value has no code in this system's code
    map (those rows must not be written).
    """
    index = canon.index
    errors = _no_errors(index)
    out = pd.DataFrame(index=index)
    for field in fields:
        column = mapping.fields[field]
        values = canon[field]
        table = mapping.tables.get(field)
        codes = mapping.codes.get(field) or (table.values if table else {})
        if codes:
            inverse = {v: k for k, v in codes.items()}
            encoded = map_values(values, inverse.get)
            unknown = values.notna() & encoded.isna()
            reason = _literal("value '{value}' has no code in the target's map for '", field, "'")
            _flag(errors, unknown, "known_code", field, reason, values)
            values = encoded
        if field in mapping.minor_units:
            values = _to_minor(values, canon, mapping, field, errors)
        out[column] = _to_python(values, types[column])
    return out, errors.dropna(subset=["check_name"])


def _to_minor(
    values: pd.Series, canon: pd.DataFrame, mapping: EntityMapping, field: str, errors: pd.DataFrame
) -> pd.Series:
    """Canonical amounts as the integer counts of minor units the system stores, by each row's currency.

    An amount is written only with its currency, and only when it is a whole number of the
    currency's minor units: 1200.50 JPY is an error, never rounded to 1201.
    """
    units = mapping.minor_units[field]
    if units.currency not in canon:
        reason = _literal(
            "'", field, f"' is written in minor units of '{units.currency}', which is not written with it"
        )
        _flag(errors, values.notna(), "valid_decimal", field, reason)
        return blank(values.index)
    reason = _literal("'", field, "' is written in minor units of currency '{value}', which has none in ISO 4217")
    places = _minor_digits(values, canon[units.currency], units, field, reason, errors)
    counts = pd.Series(
        [None if v is None or p is None else money.to_minor(v, p) for v, p in zip(values, places, strict=True)],
        index=values.index,
        dtype=object,
    )
    fraction = values.notna() & places.notna() & counts.isna()
    _flag(
        errors,
        fraction,
        "valid_decimal",
        field,
        _literal("'", field, "' is not a whole number of minor units: '{value}'"),
        values,
    )
    return map_values(counts, str)


def _to_python(values: pd.Series, python_type: type | None) -> pd.Series:
    """Canonical text as ``python_type``; text where there is no such conversion."""
    converters: dict[type | None, Any] = {
        int: int,
        float: float,
        decimal.Decimal: decimal.Decimal,
        bool: lambda v: v == "true",
        dt.date: dt.date.fromisoformat,
        dt.datetime: dt.datetime.fromisoformat,
    }
    convert = converters.get(python_type)
    if convert is None:
        return values
    # Element by element into an object Series: pandas would turn ints next to a None into floats. The
    # values are taken out as objects first: iterating a column of pandas' ``str`` dtype boxes each one.
    texts = values.to_numpy(dtype=object, na_value=None)
    return pd.Series([None if v is None else convert(v) for v in texts], index=values.index, dtype=object)
