"""The configuration's models: systems, entities, mappings and flows, validated by pydantic.

Each model rejects unknown keys, so a misspelt setting is an error, not a silent default.
``Config`` holds the four sections and the lookups the engine needs (owners of fields,
the fields a flow syncs, the load order).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from truesync.connectors.kinds import KINDS
from truesync.support.durations import Duration
from truesync.support.names import KEY_JOIN, check_member, check_name, is_path, key_names

FieldType = Literal["string", "integer", "decimal", "boolean", "date", "datetime"]
FieldFormat = Literal["email", "phone", "currency", "iso_date", "iso_datetime"]
Severity = Literal["block", "warn"]
SHARED = "shared"


class ConfigError(Exception):
    """A configuration problem, located by file and path inside the document."""

    def __init__(self, file: str, path: str, problem: str) -> None:
        self.file, self.path, self.problem = file, path, problem
        super().__init__(f"{file}: {path or '<document>'}: {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SystemConfig(_Strict):
    """One business application. Credentials live in the Airflow connection, not here.

    ``kind`` is one of the kinds registered in ``truesync.connectors.kinds``. A kind that
    takes a block has it written under the kind's own name (``rest:`` for kind ``rest``);
    the loader validates it with the kind's model into ``settings``.
    """

    kind: str = Field(description="a registered kind of system: the connector, and the block it takes")
    connection: str = Field(description="Airflow connection id holding the URL and credentials")
    description: str = ""
    max_parallel_tasks: int = Field(
        8, ge=1, description="truesync tasks working on this system as a target at once: its Airflow pool's slots"
    )
    settings: BaseModel | None = Field(None, description="the kind's block, validated by the kind's own model")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind '{value}': the known kinds are {', '.join(KINDS)}")
        return value

    @field_validator("settings", mode="plain")
    @classmethod
    def _validated_block(cls, value: Any) -> BaseModel | None:
        """Only a block the loader validated: ``settings`` is not a key of ``systems.yaml``."""
        if value is not None and not isinstance(value, BaseModel):
            raise ValueError("a kind's block is written under the kind's name, e.g. 'rest:'")
        return value

    @model_validator(mode="after")
    def _block_of_the_kind(self) -> SystemConfig:
        kind = KINDS[self.kind]
        if kind.settings is None and self.settings is not None:
            raise ValueError(f"a system of kind '{self.kind}' takes no block")
        if kind.settings is not None and not isinstance(self.settings, kind.settings):
            raise ValueError(f"a system of kind '{self.kind}' needs a '{self.kind}' block (see {kind.docs_link})")
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
    """An entity: its key, its fields and checks, and the parents it needs in a target first.

    ``key`` is one field, or a list of two or more (a composite key, ``[order_id, line_no]``);
    it is held as the fields joined by ``+`` (``order_id+line_no``), the name of the record
    key column in the engine's frames (``core.keys``).
    """

    key: str = Field(description="the field naming a record, or a list of fields that together do")
    fields: dict[str, FieldSpec]
    depends_on: list[str] = []
    references: dict[str, str] = Field(
        default_factory=dict, description="canonical field -> parent entity whose key it holds"
    )
    expectations: list[ExpectationSpec] = []

    @field_validator("key", mode="before")
    @classmethod
    def _key_fields(cls, value: Any) -> Any:
        return key_names(value, check_name) if isinstance(value, str | list) else value

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name in value:
            check_name(name)
        return value

    @property
    def key_fields(self) -> list[str]:
        """The fields of the key, in key order: one, or several for a composite key."""
        return self.key.split(KEY_JOIN)

    @property
    def composite(self) -> bool:
        return len(self.key_fields) > 1


class MinorUnits(_Strict):
    """A decimal amount the system writes as an integer count of its currency's minor units (1200 = 12.00).

    The scale is the currency's ISO 4217 minor unit (USD 2, JPY 0, KWD 3), read from the
    record's own ``currency`` field; ``exponents`` overrides it for currencies a system
    treats its own way.
    """

    currency: str = Field(description="canonical field holding the record's ISO 4217 currency code")
    exponents: dict[str, int] = Field(default_factory=dict, description="currency code -> minor-unit digits")

    @field_validator("exponents")
    @classmethod
    def _digits(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [code for code, digits in value.items() if not 0 <= digits <= 6]
        if bad:
            raise ValueError(f"minor-unit digits of '{bad[0]}' must be between 0 and 6")
        return {code.upper(): digits for code, digits in value.items()}


class CodeEntry(_Strict):
    """What one system code means, and from when (records changed earlier do not know it)."""

    value: str = Field(description="the canonical value the code stands for")
    valid_from: datetime | None = Field(None, description="naive UTC; records changed before it find the code unknown")

    @model_validator(mode="before")
    @classmethod
    def _value_alone(cls, value: Any) -> Any:
        """``A00: payment_completed`` is short for ``A00: {value: payment_completed}``."""
        return {"value": value} if isinstance(value, str) else value

    @field_validator("valid_from")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.astimezone(UTC).replace(tzinfo=None) if value is not None and value.tzinfo else value


class CodeTable(_Strict):
    """A versioned table of system codes (``codes/<name>.yaml``): every record it translates remembers
    ``name@version``, and a table whose content changed keeps no version (``content_hash``).
    """

    name: str
    version: str = Field(description="bumped whenever a code is added, changed or removed")
    description: str = ""
    codes: dict[str, CodeEntry] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> str:
        if isinstance(value, float):
            raise ValueError(f"write the version as text or a whole number ('{value}' reads as a number: 3.10 is 3.1)")
        return str(value)

    @property
    def values(self) -> dict[str, str]:
        """Code -> the canonical value it stands for."""
        return {code: entry.value for code, entry in self.codes.items()}

    @property
    def label(self) -> str:
        """``name@version``: what a translated record remembers."""
        return f"{self.name}@{self.version}"

    @property
    def content_hash(self) -> str:
        """SHA-256 of the codes, their values and times, in code order: the table's content."""
        content = {
            code: [e.value, e.valid_from.isoformat() if e.valid_from else None] for code, e in self.codes.items()
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class EntityMapping(_Strict):
    """Where an entity lives in one system and how its columns become canonical fields."""

    table: str
    db_schema: str | None = Field(None, alias="schema")
    key: str = Field(description="column holding the entity key in this system; a list for a composite key")
    cursor: str | None = Field(None, description="change-timestamp column")
    fields: dict[str, str] = Field(description="canonical field -> column")
    codes: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="canonical field -> {system code: canonical value}"
    )
    minor_units: dict[str, MinorUnits] = Field(
        default_factory=dict, description="decimal field -> how the system writes it as an integer of minor units"
    )
    code_tables: dict[str, str] = Field(
        default_factory=dict, description="canonical field -> code table (codes/<name>.yaml) translating it"
    )
    _tables: dict[str, CodeTable] = PrivateAttr(default_factory=dict)

    @property
    def tables(self) -> dict[str, CodeTable]:
        """Canonical field -> its code table, as the loader resolved ``code_tables``."""
        return self._tables

    def use_tables(self, tables: dict[str, CodeTable]) -> None:
        """Resolve ``code_tables`` by name (the loader does, once every file is read)."""
        self._tables = {field: tables[name] for field, name in self.code_tables.items() if name in tables}

    @property
    def key_columns(self) -> list[str]:
        """The key's columns, in the order of the entity's key fields."""
        return self.key.split(KEY_JOIN)

    @property
    def columns(self) -> list[str]:
        """The columns truesync reads: key, mapped fields and cursor, each once."""
        cursor = [self.cursor] if self.cursor else []
        return list(dict.fromkeys([*self.key_columns, *self.fields.values(), *cursor]))

    def as_stored(self, fields: list[str]) -> bool:
        """Whether each of ``fields`` is read as its column holds it: no codes, code table or minor units."""
        translated = {*self.codes, *self.code_tables, *self.minor_units}
        return not translated.intersection(fields)

    def narrowed(self, fields: list[str]) -> EntityMapping:
        """This mapping with only ``fields`` of its canonical fields, and the key's: a read of what a check needs."""
        kept = {f: c for f, c in self.fields.items() if f in fields or c in self.key_columns}
        return self.model_copy(update={"fields": kept})

    @property
    def paths(self) -> list[str]:
        """The columns that are member paths into nested records (kinds with nested records only)."""
        return [c for c in self.columns if is_path(c)]

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return check_name(value)

    @field_validator("key", mode="before")
    @classmethod
    def _key_columns(cls, value: Any) -> Any:
        return key_names(value, check_member) if isinstance(value, str | list) else value

    @field_validator("cursor")
    @classmethod
    def _member(cls, value: str | None) -> str | None:
        return value if value is None else check_member(value)

    @field_validator("fields")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value.values():
            check_member(column)
        return value


class SystemMapping(_Strict):
    version: str
    entities: dict[str, EntityMapping]

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> str:
        return str(value)


CLASS_METRICS = ("missing", "delayed", "overwritten", "mismatched", "invalid", "overdue")


class SilenceRule(_Strict):
    """Alert when a group of records (a terminal) last reported one of ``values`` and nothing followed.

    The newest record of each value of ``by`` is remembered across runs; a run whose window
    ends more than ``after`` past a group's newest record, when that record's ``field`` is one
    of ``values``, raises a ``silent`` alert (a till that went offline and never came back).
    """

    by: str = Field(description="canonical field grouping the records, e.g. terminal")
    field: str = Field(description="canonical field holding the state, e.g. state")
    values: list[str] = Field(min_length=1, description="states that alert when nothing follows them in time")
    after: Duration = Field(description="the silence allowed after such a state, e.g. 6h")


class QualityConfig(_Strict):
    """When data quality fails a run, raises an alert, and what reports may show."""

    mask_pii: bool = True
    batch_rows: int = Field(50_000, ge=1, le=1_000_000, description="rows of user checks validated per GX call")
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
    silence: dict[str, SilenceRule] = Field(
        default_factory=dict, description="entity -> alert on groups whose last state is followed by silence"
    )

    @field_validator("max_class_share")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for metric, limit in value.items():
            if metric not in CLASS_METRICS:
                raise ValueError(f"'{metric}' is not one of {', '.join(CLASS_METRICS)}")
            if not 0 <= limit <= 1:
                raise ValueError(f"share for '{metric}' must be between 0 and 1, got {limit}")
        return value


class FinanceConfig(_Strict):
    """The books a reconciled record is checked against as well as the target: finance's settled record
    (an invoice) and its ledger, the books' mapping of the flow's own entity, found by key.

    The books' settled record is found by the same ``match_on`` value, and every reference must
    point at it too. A closing record the target's balance refuses while the books' ledger
    holds it closed is *closed in finance, open in the target*: with ``owns_balance`` the
    target's balance is set to the books' and the record is written; otherwise it is held with
    both balances in the reason.
    """

    system: str = Field(description="the books: a system mapping this entity (its ledger) and the settled one")
    entity: str = Field(description="the books' settled entity, e.g. invoice")
    references: dict[str, str] = Field(description="field of this entity -> field of the books' settled entity")
    balance: str = Field(description="field of the books' settled entity holding its open balance")
    total: str = Field(description="field of the books' settled entity holding its total")
    owns_balance: bool = Field(False, description="the books own the balance: set the target's to theirs")


class ReconcileConfig(_Strict):
    """Before a record is written, check it against the target record it settles (payment reconciliation).

    The settled record is found by ``match_on``; every other reference must point at the same
    record, and a record closed in finance (``closing``) must not meet an open ``balance``.
    Either contradiction is ``mismatched`` and goes to the exception queue. With ``finance``
    the books are checked too (``FinanceConfig``).
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
    finance: FinanceConfig | None = Field(None, description="the books to check against as well as the target")


DeletePolicy = Literal["report", "soft", "delete"]


class DeletesConfig(_Strict):
    """What a compare does to a target record whose source record is gone (class ``deleted``).

    ``report`` lists it and leaves it; ``soft`` sets ``column`` of the target row to ``value``
    (the compare's time when no value is given); ``delete`` removes the row.
    """

    policy: DeletePolicy = "report"
    column: str | None = Field(None, description="target column a soft delete sets, e.g. deleted_at")
    value: str | None = Field(None, description="value a soft delete writes; none: the time of the compare")

    @property
    def mark(self) -> tuple[str, str | None] | None:
        """``(column, value)`` marking a target row soft-deleted (value None: any value), or None."""
        return (self.column, self.value) if self.policy == "soft" and self.column else None

    @model_validator(mode="before")
    @classmethod
    def _policy_alone(cls, value: Any) -> Any:
        """``order: delete`` is short for ``order: {policy: delete}``."""
        return {"policy": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _soft_needs_column(self) -> DeletesConfig:
        if self.policy == "soft" and self.column is None:
            raise ValueError("a soft delete needs the target 'column' it sets, e.g. deleted_at")
        if self.policy != "soft" and (self.column is not None or self.value is not None):
            raise ValueError("'column' and 'value' belong to policy 'soft'")
        if self.column is not None:
            check_name(self.column)
        return self


class CompareConfig(_Strict):
    """The flow's full compare: when it runs, what it does to deletes, and the guard on them."""

    schedule: str = Field("0 3 * * 0", description="cron of the compare DAG; default weekly, Sunday 03:00 UTC")
    max_delete_share: float = Field(
        0.01, ge=0, le=1, description="largest share of an entity's target rows one compare may delete"
    )
    deletes: dict[str, DeletesConfig] = Field(default_factory=dict, description="entity -> delete policy")

    def deletes_of(self, entity: str) -> DeletesConfig:
        return self.deletes.get(entity, DeletesConfig())


class RetentionConfig(_Strict):
    """How much of each finished run the flow keeps (``docs/operating.md``, "What the store keeps").

    A run's staged records go when it finishes with its numbers adding up, whatever is set
    here. The ledger, the exception queue, the audit trail and every run's counts and report
    are the flow's state and history: they are kept.
    """

    results_runs: int = Field(
        30, ge=1, description="newest runs whose per-record results (class, outcome, reason) stay in the store"
    )
    data_docs_runs: int = Field(10, ge=0, description="newest runs whose Data Docs site (~4 MB) stays on disk")


class FlowConfig(_Strict):
    source: str
    target: str
    entities: list[str] = Field(min_length=1)
    ownership: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="entity -> field -> owning system or 'shared'; '*' sets the default",
    )
    schedule: str = "@daily"
    triggered_by: list[str] = Field(
        default_factory=list,
        description="'<system>.<entity>' Airflow Assets another flow writes: a write there also starts a run",
    )
    start_date: date = date(2026, 1, 1)
    lookback: Duration = timedelta(hours=2)
    freshness_sla: Duration = timedelta(hours=6)
    chunk_size: int = Field(5000, ge=1, le=1_000_000)
    partition_size: int = Field(100_000, ge=1, description="records per mapped sync task")
    max_active_runs: int = Field(1, ge=1)
    retries: int = Field(3, ge=0)
    retry_delay: Duration = timedelta(minutes=1)
    description: str = ""
    tags: list[str] = []
    quality: QualityConfig = QualityConfig()
    reconcile: dict[str, ReconcileConfig] = Field(default_factory=dict, description="entity -> reconciliation")
    compare: CompareConfig = CompareConfig()
    retention: RetentionConfig = RetentionConfig()


class Config(BaseModel):
    """The whole validated configuration, with the lookups the engine needs."""

    directory: Path
    systems: dict[str, SystemConfig]
    entities: dict[str, EntityConfig]
    mappings: dict[str, SystemMapping]
    flows: dict[str, FlowConfig]
    code_tables: dict[str, CodeTable] = {}

    def entity_mapping(self, system: str, entity: str) -> EntityMapping:
        return self.mappings[system].entities[entity]

    def code_tables_of(self, flow: str, entity: str) -> list[CodeTable]:
        """The code tables a flow translates an entity through, on either side, by name."""
        spec = self.flows[flow]
        mappings = (self.entity_mapping(system, entity) for system in (spec.source, spec.target))
        tables = {table.name: table for mapping in mappings for table in mapping.tables.values()}
        return [tables[name] for name in sorted(tables)]

    def owner(self, flow: str, entity: str, field: str) -> str:
        rules = self.flows[flow].ownership.get(entity, {})
        return rules.get(field, rules.get("*", self.flows[flow].source))

    def mapped_fields(self, flow: str, entity: str) -> list[str]:
        """Non-key fields both sides map: the fields a flow can compare at all."""
        spec = self.flows[flow]
        src = self.entity_mapping(spec.source, entity).fields
        tgt = self.entity_mapping(spec.target, entity).fields
        key = self.entities[entity].key_fields
        return [f for f in self.entities[entity].fields if f not in key and f in src and f in tgt]

    def synced_fields(self, flow: str, entity: str) -> list[str]:
        """Fields the flow compares and writes: owned by its source, or shared."""
        source = self.flows[flow].source
        return [f for f in self.mapped_fields(flow, entity) if self.owner(flow, entity, f) in (source, SHARED)]

    def shared_fields(self, flow: str, entity: str) -> list[str]:
        return [f for f in self.synced_fields(flow, entity) if self.owner(flow, entity, f) == SHARED]

    def writers_into(self, system: str, flow: str, entity: str) -> list[tuple[str, str]]:
        """The (flow, entity) pairs whose writes into ``system`` land where ``entity`` of ``flow``
        reads its shared fields there: the same table, the same key fields, the same shared fields.

        Their ledger entries say which values there truesync wrote (``docs/design.md``, "Echoes").
        """
        shared = self.shared_fields(flow, entity)
        if not shared:
            return []
        place = self._rows_of(system, entity)
        return [
            (other, each)
            for other, spec in self.flows.items()
            if spec.target == system
            for each in spec.entities
            if self.shared_fields(other, each) == shared and self._rows_of(system, each) == place
        ]

    def _rows_of(self, system: str, entity: str) -> tuple[str | None, str, list[str]]:
        """Where an entity's records live in a system: schema, table and the entity's key fields."""
        mapping = self.entity_mapping(system, entity)
        return mapping.db_schema, mapping.table, self.entities[entity].key_fields

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
