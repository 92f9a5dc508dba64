"""Load and validate the version-controlled YAML configuration.

Four files under the configuration directory describe everything truesync does:
``systems.yaml``, ``entities.yaml``, ``mappings.yaml`` and ``flows.yaml``. They are
validated with pydantic on load, then cross-checked (references, cycles, ownership),
so a bad file stops everything before a single record moves. Every error names the
file, the path inside the document and the problem.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from truesync.paths import config_dir
from truesync.restconfig import RestConfig

FieldType = Literal["string", "integer", "decimal", "boolean", "date", "datetime"]
FieldFormat = Literal["email", "phone", "currency", "iso_date", "iso_datetime"]
Severity = Literal["block", "warn"]
SHARED = "shared"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ConfigError(Exception):
    """A configuration problem, located by file and path inside the document."""

    def __init__(self, file: str, path: str, problem: str) -> None:
        self.file, self.path, self.problem = file, path, problem
        super().__init__(f"{file}: {path or '<document>'}: {problem}")


def parse_duration(value: Any) -> timedelta:
    """Accept ``90s``, ``30m``, ``2h``, ``1d``, ``1w`` or a number of seconds."""
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        duration = timedelta(seconds=value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a duration such as 30m, 2h or 1d")
        duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if duration < timedelta(0):
        raise ValueError(f"'{value}' is a negative duration")
    return duration


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"'{value}' is not a valid name (letters, digits, underscore)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SystemConfig(_Strict):
    """One business application. Credentials live in the Airflow connection, not here."""

    kind: Literal["sql", "rest"]
    connection: str = Field(description="Airflow connection id holding the URL and credentials")
    description: str = ""
    rest: RestConfig | None = Field(None, description="endpoints and limits of a system of kind rest")

    @model_validator(mode="after")
    def _rest_settings(self) -> SystemConfig:
        if (self.kind == "rest") != (self.rest is not None):
            raise ValueError("a system of kind 'rest' needs a 'rest' block, and only such a system may have one")
        return self


class FieldSpec(_Strict):
    type: FieldType = "string"
    required: bool = False
    scale: int = Field(2, ge=0, le=12, description="decimal places kept for type decimal")
    format: FieldFormat | None = Field(None, description="a format checked on top of the type")
    min: float | None = Field(None, description="smallest allowed value of a number")
    max: float | None = Field(None, description="largest allowed value of a number")
    severity: Severity = Field("block", description="what a failed format or range check does")
    pii: bool | None = Field(None, description="personal data: masked in reports and Data Docs")

    @property
    def personal(self) -> bool:
        """Marked ``pii``, or (unless marked ``pii: false``) an email or phone format."""
        return self.pii if self.pii is not None else self.format in ("email", "phone")


def check_columns(column: str | None, kwargs: dict[str, Any]) -> list[str]:
    """Every column an expectation reads, from its arguments."""
    named = [column, kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")]
    return list(dict.fromkeys(c for c in [*named, *(kwargs.get("column_list") or [])] if c))


CHANGE_TIME = "change_time"  # how user expectations name a record's change time


class ExpectationSpec(_Strict):
    """A user-written Great Expectations check: any GX expectation by name, with its arguments."""

    expectation: str = Field(description="GX expectation name, e.g. expect_column_values_to_match_regex")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    severity: Severity = "block"
    description: str = ""


class EntityConfig(_Strict):
    key: str
    fields: dict[str, FieldSpec]
    depends_on: list[str] = []
    references: dict[str, str] = Field(
        default_factory=dict, description="canonical field -> parent entity whose key it holds"
    )
    expectations: list[ExpectationSpec] = []

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name in value:
            _check_name(name)
        return value


class EntityMapping(_Strict):
    """Where an entity lives in one system and how its columns become canonical fields."""

    table: str
    db_schema: str | None = Field(None, alias="schema")
    key: str = Field(description="column holding the entity key in this system")
    cursor: str | None = Field(None, description="change-timestamp column")
    fields: dict[str, str] = Field(description="canonical field -> column")
    codes: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="canonical field -> {system code: canonical value}"
    )

    @property
    def columns(self) -> list[str]:
        """The columns truesync reads: key, mapped fields and cursor, each once."""
        return list(dict.fromkeys([self.key, *self.fields.values(), *([self.cursor] if self.cursor else [])]))

    @field_validator("table", "key", "cursor")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return value if value is None else _check_name(value)

    @field_validator("fields")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value.values():
            _check_name(column)
        return value


class SystemMapping(_Strict):
    version: str
    entities: dict[str, EntityMapping]

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> str:
        return str(value)


CLASS_METRICS = ("missing", "delayed", "overwritten", "mismatched", "invalid", "overdue")


class QualityConfig(_Strict):
    """When data quality fails a run, raises an alert, and what reports may show."""

    mask_pii: bool = True
    batch_rows: int = Field(50_000, ge=1, le=1_000_000, description="rows validated per Great Expectations call")
    max_blocked_share: float = Field(0.05, ge=0, le=1, description="run fails above this share blocked per entity")
    min_records: int = Field(20, ge=0, description="shares of smaller batches are not judged: one bad row is not 100%")
    max_class_share: dict[str, float] = Field(
        default_factory=lambda: {"mismatched": 0.02, "overwritten": 0.05, "overdue": 0.10},
        description="alert when a class's share of an entity's records exceeds this",
    )
    jump_factor: float = Field(3.0, ge=1, description="alert when a share exceeds this times the recent average")
    jump_min_records: int = Field(3, ge=0, description="a jump needs at least this many records to alert")
    history_runs: int = Field(10, ge=1, description="previous runs the jump check compares against")
    fail_on_alert: bool = Field(False, description="fail the run on a class-share or jump alert too")

    @field_validator("max_class_share")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for metric, limit in value.items():
            if metric not in CLASS_METRICS:
                raise ValueError(f"'{metric}' is not one of {', '.join(CLASS_METRICS)}")
            if not 0 <= limit <= 1:
                raise ValueError(f"share for '{metric}' must be between 0 and 1, got {limit}")
        return value


class ReconcileConfig(_Strict):
    """Before a record is written, check it against the target record it settles (payment reconciliation).

    The settled record is found by ``match_on``; every other reference must point at the same
    record, and a record closed in finance (``closing``) must not meet an open ``balance``.
    Either contradiction is ``mismatched`` and goes to the exception queue.
    """

    entity: str = Field(description="the settled entity in the target, e.g. order")
    match_on: str = Field(description="field of this entity whose value finds the settled record")
    references: dict[str, str] = Field(description="field of this entity -> field of the settled entity")
    balance: str | None = Field(None, description="field of the settled entity holding its open balance")
    total: str | None = Field(None, description="field of the settled entity holding its total (with balance)")
    amount: str | None = Field(None, description="field of this entity holding its amount (with balance)")
    closing: dict[str, str] = Field(
        default_factory=dict, description="field -> canonical value marking a record closed in finance"
    )
    settling: dict[str, str] = Field(
        default_factory=dict, description="field -> canonical value marking a record that lowers the balance"
    )


class FlowConfig(_Strict):
    source: str
    target: str
    entities: list[str] = Field(min_length=1)
    ownership: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="entity -> field -> owning system or 'shared'; '*' sets the default",
    )
    schedule: str = "@daily"
    start_date: date = date(2026, 1, 1)
    lookback: timedelta = timedelta(hours=2)
    freshness_sla: timedelta = timedelta(hours=6)
    chunk_size: int = Field(5000, ge=1, le=1_000_000)
    partition_size: int = Field(100_000, ge=1, description="records per mapped sync task")
    max_active_runs: int = Field(1, ge=1)
    retries: int = Field(3, ge=0)
    retry_delay: timedelta = timedelta(minutes=1)
    description: str = ""
    tags: list[str] = []
    quality: QualityConfig = QualityConfig()
    reconcile: dict[str, ReconcileConfig] = Field(default_factory=dict, description="entity -> reconciliation")

    @field_validator("lookback", "freshness_sla", "retry_delay", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class Config(BaseModel):
    """The whole validated configuration, with the lookups the engine needs."""

    directory: Path
    systems: dict[str, SystemConfig]
    entities: dict[str, EntityConfig]
    mappings: dict[str, SystemMapping]
    flows: dict[str, FlowConfig]

    def entity_mapping(self, system: str, entity: str) -> EntityMapping:
        return self.mappings[system].entities[entity]

    def owner(self, flow: str, entity: str, field: str) -> str:
        rules = self.flows[flow].ownership.get(entity, {})
        return rules.get(field, rules.get("*", self.flows[flow].source))

    def mapped_fields(self, flow: str, entity: str) -> list[str]:
        """Non-key fields both sides map: the fields a flow can compare at all."""
        spec = self.flows[flow]
        src = self.entity_mapping(spec.source, entity).fields
        tgt = self.entity_mapping(spec.target, entity).fields
        key = self.entities[entity].key
        return [f for f in self.entities[entity].fields if f != key and f in src and f in tgt]

    def synced_fields(self, flow: str, entity: str) -> list[str]:
        """Fields the flow compares and writes: owned by its source, or shared."""
        source = self.flows[flow].source
        return [f for f in self.mapped_fields(flow, entity) if self.owner(flow, entity, f) in (source, SHARED)]

    def shared_fields(self, flow: str, entity: str) -> list[str]:
        return [f for f in self.synced_fields(flow, entity) if self.owner(flow, entity, f) == SHARED]

    def load_order(self, entities: list[str] | None = None) -> list[str]:
        """Topological order of ``depends_on``; ties keep the order entities are declared in."""
        wanted = list(self.entities) if entities is None else entities
        done: list[str] = []
        pending = list(wanted)
        while pending:
            ready = [e for e in pending if all(d in done or d not in wanted for d in self.entities[e].depends_on)]
            done.append(ready[0])
            pending.remove(ready[0])
        return done


_FILES = {
    "systems": ("systems.yaml", SystemConfig),
    "entities": ("entities.yaml", EntityConfig),
    "mappings": ("mappings.yaml", SystemMapping),
    "flows": ("flows.yaml", FlowConfig),
}


def _read_section(directory: Path, section: str) -> dict[str, Any]:
    filename, model = _FILES[section]
    path = directory / filename
    if not path.is_file():
        raise ConfigError(str(path), "", "file not found")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get(section), dict):
        raise ConfigError(str(path), section, f"expected a mapping under top-level key '{section}'")
    parsed: dict[str, Any] = {}
    for name, body in document[section].items():
        try:
            _check_name(str(name))
            parsed[str(name)] = model.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join([section, str(name), *(str(p) for p in first["loc"])])
            raise ConfigError(str(path), where, first["msg"]) from exc
        except ValueError as exc:
            raise ConfigError(str(path), f"{section}.{name}", str(exc)) from exc
    return parsed


def load_config(directory: Path | str | None = None, build_expectations: bool = True) -> Config:
    """Read, validate and cross-check the configuration directory.

    ``build_expectations=False`` skips building the user-written Great Expectations checks
    (GX takes seconds to import): for DAG parsing, which Airflow repeats every 30 seconds.
    ``truesync config check`` and every extract task build them.
    """
    base = Path(directory) if directory else config_dir()
    if not base.is_dir():
        raise ConfigError(str(base), "", "configuration directory not found")
    sections = {section: _read_section(base, section) for section in _FILES}
    config = Config(directory=base, **sections)
    _cross_check(config, build_expectations)
    return config


def _cross_check(config: Config, build_expectations: bool = True) -> None:
    _check_entities(config, build_expectations)
    _check_mappings(config)
    _check_flows(config)


def _check_entities(config: Config, build_expectations: bool) -> None:
    file = str(config.directory / "entities.yaml")
    for name, entity in config.entities.items():
        if entity.key not in entity.fields:
            raise ConfigError(file, f"entities.{name}.key", f"key '{entity.key}' is not a field")
        for parent in entity.depends_on:
            if parent not in config.entities:
                raise ConfigError(file, f"entities.{name}.depends_on", f"unknown entity '{parent}'")
        for field, parent in entity.references.items():
            if field not in entity.fields:
                raise ConfigError(file, f"entities.{name}.references.{field}", "not a field")
            if parent not in entity.depends_on:
                raise ConfigError(
                    file,
                    f"entities.{name}.references.{field}",
                    f"'{parent}' must also be listed in depends_on",
                )
        if build_expectations:
            _check_expectations(file, name, entity)
    _check_cycles(config, file)


def _check_expectations(file: str, name: str, entity: EntityConfig) -> None:
    """Build every user-written expectation now, so a typo stops the configuration, not a run."""
    if not entity.expectations:
        return
    from truesync.quality import ExpectationConfigError, user_expectation  # GX is slow to import: only when used

    for position, spec in enumerate(entity.expectations):
        where = f"entities.{name}.expectations[{position}]"
        try:
            user_expectation(spec)
        except ExpectationConfigError as exc:
            raise ConfigError(file, where, f"entity '{name}': {exc}") from exc
        for column in check_columns(None, spec.kwargs):
            if column not in entity.fields and column != CHANGE_TIME:
                raise ConfigError(file, f"{where}.kwargs", f"entity '{name}' has no field '{column}'")


def _check_cycles(config: Config, file: str) -> None:
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            raise ConfigError(file, f"entities.{name}.depends_on", f"dependency cycle: {cycle}")
        state[name] = "open"
        for parent in config.entities[name].depends_on:
            visit(parent, [*trail, name])
        state[name] = "done"

    for entity in config.entities:
        visit(entity, [])


def _check_mappings(config: Config) -> None:
    file = str(config.directory / "mappings.yaml")
    for system, mapping in config.mappings.items():
        if system not in config.systems:
            raise ConfigError(file, f"mappings.{system}", "unknown system")
        for entity, em in mapping.entities.items():
            where = f"mappings.{system}.entities.{entity}"
            if entity not in config.entities:
                raise ConfigError(file, where, "unknown entity")
            rest = config.systems[system].rest
            if rest is not None and em.table not in rest.endpoints:
                raise ConfigError(file, f"{where}.table", f"'{em.table}' is not an endpoint of REST system '{system}'")
            spec = config.entities[entity]
            if em.fields.get(spec.key) != em.key:
                raise ConfigError(file, f"{where}.fields", f"must map key '{spec.key}' to '{em.key}'")
            for field in [*em.fields, *em.codes]:
                if field not in spec.fields:
                    raise ConfigError(file, f"{where}.fields.{field}", f"not a field of '{entity}'")


def _check_flows(config: Config) -> None:
    file = str(config.directory / "flows.yaml")
    for name, flow in config.flows.items():
        for role in ("source", "target"):
            system = getattr(flow, role)
            if system not in config.systems:
                raise ConfigError(file, f"flows.{name}.{role}", f"unknown system '{system}'")
        if flow.source == flow.target:
            raise ConfigError(file, f"flows.{name}.target", "source and target are the same system")
        for entity in flow.entities:
            _check_flow_entity(config, file, name, entity)
        for entity, rules in flow.reconcile.items():
            _check_reconcile(config, file, f"flows.{name}.reconcile.{entity}", flow, entity, rules)
        for entity, rules in flow.ownership.items():
            if entity not in flow.entities:
                raise ConfigError(file, f"flows.{name}.ownership.{entity}", "entity not in flow")
            for field, owner in rules.items():
                where = f"flows.{name}.ownership.{entity}.{field}"
                if field != "*" and field not in config.entities[entity].fields:
                    raise ConfigError(file, where, f"not a field of '{entity}'")
                if owner != SHARED and owner not in config.systems:
                    raise ConfigError(file, where, f"owner '{owner}' is neither a system nor 'shared'")


def _check_flow_entity(config: Config, file: str, flow: str, entity: str) -> None:
    where = f"flows.{flow}.entities"
    if entity not in config.entities:
        raise ConfigError(file, where, f"unknown entity '{entity}'")
    spec = config.flows[flow]
    for system in (spec.source, spec.target):
        if entity not in config.mappings.get(system, SystemMapping(version="0", entities={})).entities:
            raise ConfigError(file, where, f"system '{system}' has no mapping for '{entity}'")
    if config.entity_mapping(spec.source, entity).cursor is None:
        raise ConfigError(file, where, f"source mapping of '{entity}' needs a cursor column")
    source_fields = config.entity_mapping(spec.source, entity).fields
    for position, user in enumerate(config.entities[entity].expectations):
        unmapped = [c for c in check_columns(None, user.kwargs) if c not in source_fields and c != CHANGE_TIME]
        if unmapped:
            raise ConfigError(
                file,
                where,
                f"expectation {position} of '{entity}' ({user.expectation}) reads {', '.join(unmapped)}, "
                f"which source '{spec.source}' does not map",
            )
    for parent in config.entities[entity].references.values():
        if parent not in config.mappings[spec.target].entities:
            raise ConfigError(
                file, where, f"'{entity}' references '{parent}', which target '{spec.target}' does not map"
            )


def _check_reconcile(
    config: Config, file: str, where: str, flow: FlowConfig, entity: str, rules: ReconcileConfig
) -> None:
    if entity not in flow.entities:
        raise ConfigError(file, where, "entity not in flow")
    if rules.entity not in config.mappings[flow.target].entities:
        raise ConfigError(file, f"{where}.entity", f"target '{flow.target}' does not map '{rules.entity}'")
    if rules.match_on not in rules.references:
        raise ConfigError(file, f"{where}.match_on", "must be one of the references")
    mine, settled = config.entities[entity].fields, config.entities[rules.entity].fields
    for field, other in rules.references.items():
        if field not in mine:
            raise ConfigError(file, f"{where}.references.{field}", f"not a field of '{entity}'")
        if other not in settled:
            raise ConfigError(file, f"{where}.references.{field}", f"'{other}' is not a field of '{rules.entity}'")
        if other not in config.entity_mapping(flow.target, rules.entity).fields:
            raise ConfigError(file, f"{where}.references.{field}", f"target '{flow.target}' does not map '{other}'")
    _check_reconcile_target(config, file, where, flow, rules)
    target = config.entity_mapping(flow.target, rules.entity)
    for name in ("balance", "total"):
        field = getattr(rules, name)
        if field is not None and field not in settled:
            raise ConfigError(file, f"{where}.{name}", f"not a field of '{rules.entity}'")
        if field is not None and field not in target.fields:
            raise ConfigError(file, f"{where}.{name}", f"target '{flow.target}' does not map '{field}'")
    if rules.balance is not None and (rules.total is None or rules.amount is None):
        raise ConfigError(file, f"{where}.balance", "the balance check needs 'total' and 'amount' too")
    if rules.amount is not None and rules.amount not in mine:
        raise ConfigError(file, f"{where}.amount", f"not a field of '{entity}'")
    for name in ("closing", "settling"):
        for field in getattr(rules, name):
            if field not in mine:
                raise ConfigError(file, f"{where}.{name}.{field}", f"not a field of '{entity}'")


def _check_reconcile_target(config: Config, file: str, where: str, flow: FlowConfig, rules: ReconcileConfig) -> None:
    """A REST target must be able to find the settled records by ``match_on``."""
    rest = config.systems[flow.target].rest
    if rest is None:
        return
    target = config.entity_mapping(flow.target, rules.entity)
    member = target.fields[rules.references[rules.match_on]]
    lookup = rest.endpoints[target.table].lookup
    if lookup is None or member not in lookup.by:
        raise ConfigError(
            file, f"{where}.match_on", f"endpoint '{target.table}' of '{flow.target}' has no lookup.by '{member}'"
        )
