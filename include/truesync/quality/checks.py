"""Data-quality checks with Great Expectations, generated from the configuration.

Every entity gets a suite built from what the YAML already says (key, required fields,
types, code maps, formats, ranges) plus the expectations users add by name. Checks run on
each extracted chunk, never on whole tables, with one ephemeral GX context and one suite
per entity reused across chunks. Every check is a GX expectation, named and reported as
GX names it. The ones generated from the YAML are evaluated by ``quality.generated`` with
GX's pandas rules, a vectorised line each, and never built as GX objects; user expectations
are validated by GX, which finds their failing rows (its unexpected index list). GX is
imported on first use (``quality.gx``): a process whose entities have no user expectations
imports it only to build Data Docs. truesync turns the failing rows into exception-queue
reasons and per-check statistics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pandas as pd

from truesync.config import (
    CHANGE_TIME,
    Config,
    ConfigError,
    EntityConfig,
    EntityMapping,
    ExpectationSpec,
    FieldSpec,
    check_columns,
)
from truesync.core.canonical import as_text, blank, raw_keys, read_times, to_utc_naive
from truesync.core.money import iso_currencies
from truesync.quality import generated
from truesync.quality.generated import BETWEEN, COMPOUND_UNIQUE, IN_SET, MATCHES, NOT_NULL, PAIR_EQUAL, UNIQUE
from truesync.support.frames import iso_text

BLOCK, WARN = "block", "warn"
CHANGE_INSTANT = "change_time_utc"  # the change time parsed: one instant spelled two ways is one instant
EXAMPLES_KEPT = 5
NUMBER_SUFFIX = "_as_number"
_expect = generated.expectation

_TYPE_PATTERNS = {
    "integer": (r"^\s*[-+]?\d+(?:\.0*)?\s*$", "must be a whole number"),
    "decimal": (r"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)\s*$", "must be a decimal number"),
    "boolean": (r"(?i)^\s*(?:true|t|1|yes|y|false|f|0|no|n)\s*$", "must be true or false"),
    # ISO 8601 by regex, not by parsing: GX's dateutil check costs ten times all others together.
    # A well-shaped impossible date (2026-02-30) is still caught when the value is mapped.
    "date": (r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$", "must be an ISO date (YYYY-MM-DD)"),
    "datetime": (
        r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$",
        "must be an ISO date-time (YYYY-MM-DD HH:MM:SS)",
    ),
}
_FORMAT_PATTERNS = {
    "email": (r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$", "must be an email address"),
    "phone": (r"^\+?[0-9][0-9 ()./-]{5,24}$", "must be a phone number"),
    "iso_date": (r"^\d{4}-\d{2}-\d{2}$", "must be an ISO date (YYYY-MM-DD)"),
    "iso_datetime": (
        r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?$",
        "must be an ISO date-time",
    ),
}


class ExpectationConfigError(ValueError):
    """A user-written expectation GX does not know, or whose arguments it rejects."""


@dataclass(frozen=True)
class Check:
    """One expectation of a suite, with what a person needs to read its failures."""

    expectation: Any  # a generated.Expectation, or a great_expectations Expectation for a user check
    column: str | None
    severity: str
    rule: str  # what a good value looks like, e.g. "must be an email address"
    typed: bool = False  # sees numbers and timestamps (user checks), not the source's text

    @property
    def name(self) -> str:
        return self.expectation.expectation_type

    @property
    def kwargs(self) -> dict[str, Any]:
        """The expectation's arguments, as GX's configuration holds them."""
        if isinstance(self.expectation, generated.Expectation):
            return self.expectation.kwargs
        return self.expectation.configuration.kwargs


@dataclass
class ChunkVerdict:
    """What the checks found in one chunk."""

    failures: pd.DataFrame  # index: rows held by a blocking check; columns check_name, field, reason, value
    stats: list[dict[str, Any]] = field(default_factory=list)  # one per check, for reports and Data Docs


def _gx() -> Any:
    """Great Expectations, imported on first use (``quality.gx``)."""
    from truesync.quality.gx import gx

    return gx


def user_expectation(spec: ExpectationSpec) -> Any:
    """A GX expectation from its snake_case name and arguments; unknown names and bad arguments raise."""
    _gx()
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        impl = get_expectation_impl(spec.expectation)
    except Exception as exc:  # noqa: BLE001 - GX raises its own ExpectationNotFoundError
        raise ExpectationConfigError(f"unknown Great Expectations expectation '{spec.expectation}'") from exc
    try:
        return impl(**spec.kwargs)
    except Exception as exc:  # noqa: BLE001 - pydantic (v1 and v2) and GX validation errors
        detail = str(exc).replace("\n", " ")
        raise ExpectationConfigError(f"'{spec.expectation}' rejects its arguments {spec.kwargs}: {detail}") from exc


def check_expectations(config: Config) -> None:
    """Build every user-written expectation now, so a typo stops the configuration, not a run.

    ``truesync config check`` calls this after loading the configuration; an unknown name or
    arguments GX rejects become a ``ConfigError`` naming the file, the entity and the position.
    """
    file = str(config.directory / "entities.yaml")
    for name, entity in config.entities.items():
        for position, spec in enumerate(entity.expectations):
            try:
                user_expectation(spec)
            except ExpectationConfigError as exc:
                raise ConfigError(file, f"entities.{name}.expectations[{position}]", f"entity '{name}': {exc}") from exc


def build_checks(spec: EntityConfig, mapping: EntityMapping, fields: list[str]) -> list[Check]:
    """The entity's suite, in the order failures are reported: key first, user checks last."""
    checks = [Check(_expect(NOT_NULL, column=f), f, BLOCK, "must not be null") for f in spec.key_fields]
    if mapping.cursor:
        checks.append(Check(_expect(NOT_NULL, column=CHANGE_TIME), CHANGE_TIME, BLOCK,
                            f"(column '{mapping.cursor}') must not be null"))  # fmt: skip
        unique = _expect(COMPOUND_UNIQUE, column_list=[spec.key, CHANGE_INSTANT])
        checks.append(Check(unique, spec.key, BLOCK, "must not appear twice with the same change time"))
    for name in fields:
        required = spec.fields[name].required and name not in spec.key_fields  # the key's own check comes first
        checks += _field_checks(name, spec.fields[name], mapping, required)
    for user in spec.expectations:
        expectation = user_expectation(user)
        column = next(iter(check_columns(None, user.kwargs)), None)
        rule = user.description or f"must pass {user.expectation}"
        checks.append(Check(expectation, column, user.severity, rule, typed=True))
    return checks


def _field_checks(name: str, spec: FieldSpec, mapping: EntityMapping, required: bool) -> list[Check]:
    checks = []
    if required:
        checks.append(Check(_expect(NOT_NULL, column=name), name, BLOCK, "must not be null"))
    if name in mapping.codes:
        codes = sorted(mapping.codes[name])
        in_set = _expect(IN_SET, column=name, value_set=codes)
        checks.append(Check(in_set, name, BLOCK, f"must be one of the codes {', '.join(codes)}"))
    elif spec.type in _TYPE_PATTERNS:
        pattern, rule = _TYPE_PATTERNS[spec.type]
        checks.append(Check(_expect(MATCHES, column=name, regex=pattern), name, BLOCK, rule))
    if spec.format == "currency":
        currencies = _expect(IN_SET, column=name, value_set=sorted(iso_currencies()))
        checks.append(Check(currencies, name, spec.severity, "must be an ISO 4217 currency code"))
    elif spec.format:
        pattern, rule = _FORMAT_PATTERNS[spec.format]
        checks.append(Check(_expect(MATCHES, column=name, regex=pattern), name, spec.severity, rule))
    if spec.min is not None or spec.max is not None:
        between = _expect(BETWEEN, column=name + NUMBER_SUFFIX, min_value=spec.min, max_value=spec.max)
        checks.append(Check(between, name, spec.severity, _range_rule(spec)))
    return checks


def _range_rule(spec: FieldSpec) -> str:
    if spec.min is not None and spec.max is not None:
        return f"must be between {spec.min:g} and {spec.max:g}"
    return f"must be at least {spec.min:g}" if spec.min is not None else f"must be at most {spec.max:g}"


def validation_frame(raw: pd.DataFrame, mapping: EntityMapping, spec: EntityConfig) -> pd.DataFrame:
    """The chunk as the checks see it: every source-mapped field as text, the change time, numbers for ranges.

    Values are checked as the source holds them, before mapping, so a check reports the
    value a person can find in the source system.
    """
    frame = pd.DataFrame(index=raw.index)
    for name, column in mapping.fields.items():
        frame[name] = as_text(raw[column]) if column in raw else None
        if spec.fields[name].min is not None or spec.fields[name].max is not None:
            frame[name + NUMBER_SUFFIX] = pd.to_numeric(frame[name], errors="coerce")
    if spec.composite:  # the record key, for uniqueness and examples (``core.keys``)
        frame[spec.key] = raw_keys(raw, mapping)
    if mapping.cursor:
        times = raw[mapping.cursor] if mapping.cursor in raw else blank(raw.index)
        frame[CHANGE_TIME] = as_text(times)
        frame[CHANGE_INSTANT] = iso_text(read_times(times))
    return frame


class Suite:
    """One entity's checks; validates batch after batch.

    Generated checks read the source's text (a pattern sees ``12,5O`` as written) and are
    evaluated by ``quality.generated``; user checks get numbers and timestamps for typed
    fields, so ``expect_column_mean_to_be_between`` or a date range work as GX documents
    them, and are validated by GX as one saved suite.
    """

    def __init__(self, name: str, checks: list[Check], key: str, types: dict[str, str]) -> None:
        self.key, self.types = key, types
        self.generated = [c for c in checks if not c.typed]
        user = [c for c in checks if c.typed]
        self.user = _UserSuite(f"{name}.typed", user) if user else None
        self.checks = self.generated + user  # the order failures are reported in

    def validate(self, frame: pd.DataFrame) -> ChunkVerdict:
        """Run every check; blocking failures name the first check each bad row failed."""
        if frame.empty:
            return ChunkVerdict(_no_failures(frame.index))
        # exact copies of a row are one record, not a duplicate key (no copies where every key is unique)
        distinct = frame if frame[self.key].is_unique else frame.drop_duplicates()
        outcomes = [_evaluated(check, distinct) for check in self.generated]
        if self.user:
            outcomes += self.user.run(_typed(distinct, self.types))
        return _verdict(self.checks, outcomes, distinct, self.key)


@dataclass(frozen=True)
class Outcome:
    """What one check found in a batch."""

    success: bool
    rows: list[Any]  # the unexpected rows, in the batch's order
    error: str | None = None  # the check itself crashed on the data
    observed: str | None = None  # what a failed check on the batch as a whole saw; it names no rows


def _evaluated(check: Check, frame: pd.DataFrame) -> Outcome:
    """A generated check's outcome (``quality.generated``): it passes when no row is unexpected.

    A check that cannot run on the batch (a column it names is missing) fails without naming
    rows and reports why, as GX reports an expectation that raised.
    """
    try:
        mask = generated.unexpected(check.expectation, frame)
    except Exception as exc:  # noqa: BLE001 - reported as the check's error, as GX's catch_exceptions does
        return Outcome(success=False, rows=[], error=f"the check itself failed: {type(exc).__name__}: {exc}")
    return Outcome(success=not mask.any(), rows=frame.index[mask.to_numpy()].tolist())


class _UserSuite:
    """The user checks of an entity as a saved GX suite, and the batch definition it validates."""

    def __init__(self, name: str, checks: list[Check]) -> None:
        self.checks = checks
        context = _context()
        self.suite = context.suites.add_or_update(
            _gx().ExpectationSuite(name=name, expectations=[c.expectation for c in checks])
        )
        source = context.data_sources.add_pandas(f"{name}#{id(self)}")  # one per suite: no shared state
        self.batch_definition = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("chunk")

    def run(self, frame: pd.DataFrame) -> list[Outcome]:
        with _batch_of(self.batch_definition, frame) as batch:
            result = batch.validate(self.suite, result_format=_COMPLETE)
        by_id = {outcome.expectation_config.id: outcome for outcome in result.results}  # GX may reorder them
        return [_from_gx(by_id[expectation.id]) for expectation in self.suite.expectations]


@contextmanager
def _batch_of(definition: Any, frame: pd.DataFrame) -> Iterator[Any]:
    """A GX batch of ``frame``, which GX forgets once the block is done.

    After validating, GX's execution engine keeps the batch's data in its batch manager
    (``reset_batch_cache`` leaves the data in place) and the metrics it computed (columns
    of the chunk's values) in its metric cache, which no later validation reads: each
    recomputes its own. A suite lives as long as its process, so each one would hold the
    last chunk it checked: at 50,000 records a chunk, tens of MB per suite, through the
    sync that follows. The metric cache has no public way to empty it.
    """
    try:
        yield definition.get_batch(batch_parameters={"dataframe": frame})
    finally:
        engine = definition.data_asset.datasource.get_execution_engine()
        engine.batch_manager.reset_batch_cache()
        engine.batch_manager.batch_data_cache.clear()
        engine._metric_cache.clear()


def _from_gx(outcome: Any) -> Outcome:
    """A GX validation result read as an ``Outcome``; a check that crashed names no rows."""
    error = _crash(outcome)
    if error:
        return Outcome(success=outcome.success, rows=[], error=error)
    rows = list(outcome.result.get("unexpected_index_list") or [])
    return Outcome(success=outcome.success, rows=rows, observed=_observed(outcome))


def _typed(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Numbers and timestamps for typed fields; unreadable values become null."""
    typed = frame.copy()
    for column in typed.columns:
        kind = "datetime" if column == CHANGE_TIME else types.get(column)
        if kind in ("integer", "decimal"):
            typed[column] = pd.to_numeric(typed[column], errors="coerce")
        elif kind in ("date", "datetime"):
            typed[column] = to_utc_naive(typed[column])
    return typed


_COMPLETE = {"result_format": "COMPLETE"}


def run_checks(checks: list[Check], frame: pd.DataFrame, key: str, first_position: int = 0) -> ChunkVerdict:
    """Generated checks whose arguments change from call to call (the parents found in a target, a count)."""
    if frame.empty:
        return ChunkVerdict(_no_failures(frame.index))
    return _verdict(checks, [_evaluated(check, frame) for check in checks], frame, key, first_position)


def found_in_target(column: str, severity: str, rule: str) -> Check:
    """Every value of ``column`` was found in a target (or among records ready in this run): it
    equals the column ``with_found`` adds, which holds the value where it was found and null where not.

    A pair of columns instead of ``expect_column_values_to_be_in_set`` over the values found:
    the check's arguments, kept in the report and Data Docs, stay as short as the rule.
    """
    pair = _expect(PAIR_EQUAL, column_A=column, column_B=_found_column(column))
    return Check(pair, column, severity, rule)


def with_found(column: str, frame: pd.DataFrame, found: set[str]) -> pd.DataFrame:
    """``frame`` plus the column ``found_in_target`` compares ``column`` with: the value where it is in ``found``."""
    values = frame[column].astype(object)
    return frame.assign(**{_found_column(column): values.where(values.isin(found), None)})


def _found_column(column: str) -> str:
    return f"{column}_found_in_target"


def unique(column: str, severity: str, rule: str) -> Check:
    """No value of ``column`` appears twice: a written record matches one target record, not several."""
    return Check(_expect(UNIQUE, column=column), column, severity, rule)


def _verdict(
    checks: list[Check], outcomes: list[Outcome], frame: pd.DataFrame, key: str, first_position: int = 0
) -> ChunkVerdict:
    failures: dict[Any, dict[str, Any]] = {}
    stats = [
        _read(position, check, outcome, frame, key, failures)
        for position, (check, outcome) in enumerate(zip(checks, outcomes, strict=True), start=first_position)
    ]
    table = pd.DataFrame.from_dict(failures, orient="index", columns=["check_name", "field", "reason", "value"])
    return ChunkVerdict(table if failures else _no_failures(frame.index), stats)


def _read(
    position: int, check: Check, outcome: Outcome, frame: pd.DataFrame, key: str, failures: dict[Any, dict[str, Any]]
) -> dict[str, Any]:
    """One check's statistics; its failing rows join ``failures`` when the check blocks and failed.

    A check that passed within its ``mostly`` tolerance still lists its unexpected rows; they
    are reported, not held.
    """
    kwargs = check.kwargs  # a user check's GX configuration is built anew on each read
    columns = kwargs.get("column_list") or ([check.column] if check.column else [])
    examples = []
    for row in outcome.rows:
        value = _shown(columns, frame, row)
        if len(examples) < EXAMPLES_KEPT:
            examples.append({"key": _text(frame.at[row, key]), "value": value})
        if check.severity == BLOCK and not outcome.success and row not in failures:
            failures[row] = {"check_name": check.name, "field": check.column, "value": value,
                             "reason": _reason(check, value)}  # fmt: skip
    return {
        "position": position,
        "expectation": check.name,
        "column_name": check.column,
        "severity": check.severity,
        "rule": check.rule,
        "evaluated": len(frame),
        "unexpected": len(outcome.rows),
        "examples": examples,
        "error": outcome.error,
        "observed": outcome.observed,
        "kwargs": kwargs,
    }


def _crash(outcome: Any) -> str | None:
    """The error of a check that crashed on the data; GX reports it flat or per metric."""
    info = outcome.exception_info or {}
    nested = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for item in nested:
        if item.get("raised_exception") or item.get("exception_message"):
            return f"the check itself failed: {item.get('exception_message')}"
    return None


def _observed(outcome: Any) -> str | None:
    """What a failed check on the batch as a whole (a mean, a row count) saw; it names no rows."""
    if outcome.success or "unexpected_index_list" in outcome.result:
        return None
    return repr(outcome.result.get("observed_value"))


def _no_failures(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(index=index[:0], columns=["check_name", "field", "reason", "value"])


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _shown(columns: list[str], frame: pd.DataFrame, row: Any) -> str | None:
    """The offending value: the checked column's value, or the key and change time of a duplicate."""
    values = [_text(frame.at[row, c]) if c in frame else None for c in columns]
    return values[0] if len(values) == 1 else " @ ".join(v or "" for v in values) or None


def _reason(check: Check, value: str | None) -> str:
    shown = "null" if value is None else f"'{value}'"
    subject = f"field '{check.column}'" if check.column else "the record"
    return f"{check.name}: {subject} {check.rule}; found {shown}"


def fresh_context() -> Any:
    """An ephemeral GX context: no files (not even a temporary docs site), no cloud, no progress bars."""
    gx = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    in_memory = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(store_backend_defaults=in_memory))
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


_context = cache(fresh_context)  # validation shares one context per process


_SUITES: dict[tuple[int, str], tuple[object, Suite]] = {}


def suite_for(name: str, spec: EntityConfig, mapping: EntityMapping, fields: list[str], owner: object) -> Suite:
    """The suite of an entity in a flow, built once per configuration object and process.

    ``owner`` (the configuration) is kept alive with its suite, so its id is never reused.
    """
    key = (id(owner), name)
    if key not in _SUITES:
        types = {name: field.type for name, field in spec.fields.items()}
        _SUITES[key] = (owner, Suite(name, build_checks(spec, mapping, fields), spec.key, types))
    return _SUITES[key][1]
