"""Cross-checks of a parsed configuration: what no single file can validate on its own.

Entities' keys, parents and cycles; mappings against entities and systems; flows against
mappings, ownership and reconciliation rules. Each problem is a ``ConfigError`` naming the
file and the path inside it. What only a kind of system knows (does a table name an endpoint,
can a target find records by a member) is asked of the kind (``truesync.connectors.kinds``).
"""

from __future__ import annotations

from truesync.config.models import (
    CHANGE_TIME,
    SHARED,
    Config,
    ConfigError,
    EntityConfig,
    EntityMapping,
    FinanceConfig,
    FlowConfig,
    ReconcileConfig,
    SystemMapping,
    check_columns,
)
from truesync.connectors.kinds import KINDS


def cross_check(config: Config) -> None:
    """Every cross-check; the first problem found is raised."""
    _check_entities(config)
    _check_mappings(config)
    _check_flows(config)


def _check_entities(config: Config) -> None:
    file = str(config.directory / "entities.yaml")
    for name, entity in config.entities.items():
        for field in entity.key_fields:
            if field not in entity.fields:
                raise ConfigError(file, f"entities.{name}.key", f"key '{field}' is not a field")
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
            if config.entities[parent].composite:
                problem = f"'{parent}' has a composite key; a reference is one field holding a parent's key"
                raise ConfigError(file, f"entities.{name}.references.{field}", problem)
        _check_expectation_fields(file, name, entity)
    _check_cycles(config, file)


def _check_expectation_fields(file: str, name: str, entity: EntityConfig) -> None:
    """User-written expectations read fields of the entity (or its change time).

    Whether Great Expectations knows the expectation and accepts its arguments is checked by
    ``truesync.quality.checks.check_expectations``.
    """
    for position, spec in enumerate(entity.expectations):
        for column in check_columns(None, spec.kwargs):
            if column not in entity.fields and column != CHANGE_TIME:
                where = f"entities.{name}.expectations[{position}].kwargs"
                raise ConfigError(file, where, f"entity '{name}' has no field '{column}'")


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
            system_config = config.systems[system]
            problem = KINDS[system_config.kind].table_problem(system_config.settings, em.table)
            if problem is not None:
                raise ConfigError(file, f"{where}.table", f"system '{system}': {problem}")
            spec = config.entities[entity]
            _check_key(file, where, em, spec, system_config.kind)
            for field in [*em.fields, *em.codes]:
                if field not in spec.fields:
                    raise ConfigError(file, f"{where}.fields.{field}", f"not a field of '{entity}'")
            _check_code_tables(config, file, where, em)
            if em.paths and not KINDS[system_config.kind].paths:
                problem = f"'{em.paths[0]}' is a member path; systems of kind '{system_config.kind}' have flat records"
                raise ConfigError(file, where, problem)
            _check_minor_units(file, where, em, spec)


def _check_key(file: str, where: str, em: EntityMapping, spec: EntityConfig, kind: str) -> None:
    """The mapping's key columns are the entity's key fields as mapped, one column per field, in order."""
    fields, columns = spec.key_fields, em.key_columns
    if len(columns) != len(fields):
        problem = f"the entity's key has {len(fields)} field(s) ({', '.join(fields)}); list one column for each"
        raise ConfigError(file, f"{where}.key", problem)
    if spec.composite and not KINDS[kind].composite_keys:
        raise ConfigError(file, f"{where}.key", f"systems of kind '{kind}' take single-field keys only")
    for field, column in zip(fields, columns, strict=True):
        if em.fields.get(field) != column:
            raise ConfigError(file, f"{where}.fields", f"must map key '{field}' to '{column}'")


def _check_code_tables(config: Config, file: str, where: str, em: EntityMapping) -> None:
    """A code table translates a mapped field that has no inline codes, and exists as ``codes/<name>.yaml``."""
    for field, name in em.code_tables.items():
        at = f"{where}.code_tables.{field}"
        if field not in em.fields:
            raise ConfigError(file, at, f"'{field}' is not a mapped field")
        if field in em.codes:
            raise ConfigError(file, at, f"'{field}' has inline codes too: use one or the other")
        if name not in config.code_tables:
            raise ConfigError(file, at, f"no code table '{name}' (expected {config.directory / 'codes' / name}.yaml)")


def _check_minor_units(file: str, where: str, em: EntityMapping, spec: EntityConfig) -> None:
    """An amount in minor units is a mapped decimal field, and its currency is mapped too."""
    for field, units in em.minor_units.items():
        at = f"{where}.minor_units.{field}"
        if field not in em.fields or spec.fields[field].type != "decimal":
            raise ConfigError(file, at, "must be a decimal field this mapping maps")
        if units.currency not in em.fields:
            raise ConfigError(file, f"{at}.currency", f"'{units.currency}' is not a field this mapping maps")


def _check_flows(config: Config) -> None:
    file = str(config.directory / "flows.yaml")
    for name, flow in config.flows.items():
        for role in ("source", "target"):
            system = getattr(flow, role)
            if system not in config.systems:
                raise ConfigError(file, f"flows.{name}.{role}", f"unknown system '{system}'")
        if flow.source == flow.target:
            raise ConfigError(file, f"flows.{name}.target", "source and target are the same system")
        kind = KINDS[config.systems[flow.target].kind]
        if not kind.writes:
            raise ConfigError(file, f"flows.{name}.target", f"systems of kind '{kind.name}' are read, never written")
        for entity in flow.entities:
            _check_flow_entity(config, file, name, entity)
        for entity, rules in flow.reconcile.items():
            _check_reconcile(config, file, f"flows.{name}.reconcile.{entity}", flow, entity, rules)
        _check_deletes(config, file, name, flow)
        _check_silence(config, file, name, flow)
        _check_triggers(config, file, name, flow)
        for entity, rules in flow.ownership.items():
            if entity not in flow.entities:
                raise ConfigError(file, f"flows.{name}.ownership.{entity}", "entity not in flow")
            for field, owner in rules.items():
                where = f"flows.{name}.ownership.{entity}.{field}"
                if field != "*" and field not in config.entities[entity].fields:
                    raise ConfigError(file, where, f"not a field of '{entity}'")
                if owner != SHARED and owner not in config.systems:
                    raise ConfigError(file, where, f"owner '{owner}' is neither a system nor 'shared'")


def _check_triggers(config: Config, file: str, name: str, flow: FlowConfig) -> None:
    """Each Asset a flow is triggered by is a target entity another flow writes (a flow's own would start itself)."""
    written = {f"{other.target}.{e}" for flow_name, other in config.flows.items() if flow_name != name
               for e in other.entities}  # fmt: skip
    for i, asset in enumerate(flow.triggered_by):
        if asset not in written:
            known = ", ".join(sorted(written)) or "none"
            problem = f"no other flow writes '{asset}' (<system>.<entity> other flows write: {known})"
            raise ConfigError(file, f"flows.{name}.triggered_by[{i}]", problem)


def _check_silence(config: Config, file: str, name: str, flow: FlowConfig) -> None:
    """A silence rule watches an entity of the flow by fields the flow syncs (they are what it stages)."""
    for entity, rule in flow.quality.silence.items():
        where = f"flows.{name}.quality.silence.{entity}"
        if entity not in flow.entities:
            raise ConfigError(file, where, "entity not in flow")
        synced = [*config.entities[entity].key_fields, *config.synced_fields(name, entity)]
        for key, field in (("by", rule.by), ("field", rule.field)):
            if field not in synced:
                raise ConfigError(file, f"{where}.{key}", f"'{field}' is not a field the flow syncs")


def _check_deletes(config: Config, file: str, name: str, flow: FlowConfig) -> None:
    """Delete policies name the flow's entities, and only a kind that can delete is asked to."""
    kind = KINDS[config.systems[flow.target].kind]
    for entity, policy in flow.compare.deletes.items():
        where = f"flows.{name}.compare.deletes.{entity}"
        if entity not in flow.entities:
            raise ConfigError(file, where, "entity not in flow")
        if policy.policy != "report" and not kind.deletes:
            raise ConfigError(
                file, where, f"target '{flow.target}' (kind {kind.name}) cannot delete records: use 'report'"
            )


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
    paths = config.entity_mapping(spec.target, entity).paths
    if paths:
        problem = f"target '{spec.target}' maps '{entity}' to member path '{paths[0]}': paths are read, not written"
        raise ConfigError(file, where, problem)
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
    if rules.finance is not None:
        _check_finance(config, file, f"{where}.finance", entity, rules, rules.finance)


def _check_finance(
    config: Config, file: str, where: str, entity: str, rules: ReconcileConfig, books: FinanceConfig
) -> None:
    """The books must map this entity (their ledger) and the settled one, with every field the rule names."""
    if rules.balance is None:
        raise ConfigError(file, where, "the books' balance is checked with the target's: set 'balance' on the rule")
    if books.system not in config.systems:
        raise ConfigError(file, f"{where}.system", f"unknown system '{books.system}'")
    mapped = config.mappings[books.system].entities
    for name in (entity, books.entity):
        if name not in mapped:
            raise ConfigError(file, f"{where}.system", f"'{books.system}' does not map '{name}'")
    if rules.match_on not in books.references:
        raise ConfigError(file, f"{where}.references", f"must name match_on '{rules.match_on}'")
    settled = config.entity_mapping(books.system, books.entity)
    for field, other in books.references.items():
        if field not in config.entities[entity].fields:
            raise ConfigError(file, f"{where}.references.{field}", f"not a field of '{entity}'")
        if other not in settled.fields:
            raise ConfigError(file, f"{where}.references.{field}", f"'{books.system}' does not map '{other}'")
    for name in ("balance", "total"):
        if getattr(books, name) not in settled.fields:
            raise ConfigError(file, f"{where}.{name}", f"'{books.system}' does not map '{getattr(books, name)}'")
    problem = _lookup_problem(config, books.system, books.entity, books.references[rules.match_on])
    if problem is not None:
        raise ConfigError(file, f"{where}.references", f"'{books.system}': {problem}")


def _check_reconcile_target(config: Config, file: str, where: str, flow: FlowConfig, rules: ReconcileConfig) -> None:
    """The target must be able to find the settled records by ``match_on``."""
    problem = _lookup_problem(config, flow.target, rules.entity, rules.references[rules.match_on])
    if problem is not None:
        raise ConfigError(file, f"{where}.match_on", f"target '{flow.target}': {problem}")


def _lookup_problem(config: Config, system: str, entity: str, field: str) -> str | None:
    """Why ``system`` cannot find records of ``entity`` by ``field``, or None when it can."""
    settings, mapping = config.systems[system], config.entity_mapping(system, entity)
    return KINDS[settings.kind].lookup_problem(settings.settings, mapping.table, mapping.fields[field])
