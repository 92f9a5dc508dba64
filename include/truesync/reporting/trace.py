"""The path of one record: what every run decided about it, its ledger entry, its overwritten
values and exceptions from the store, and its current values read live from both systems, side by
side (``truesync trace``; ``docs/operating.md``, "Following one record").

Rules:

* The live values are canonical (the form the flow compares), field by field for every field
  both systems map; ``differs`` is set only for the fields the flow syncs, since a field the
  target owns may differ by design. A value the mapping cannot read shows as ``unreadable:``
  with the reason, which quotes it.
* A soft-deleted target row (the compare's ``deletes: soft``) counts as absent, as it does for
  a sync.
* Values of personal fields are masked everywhere in the trace, as in the run reports, unless the
  flow turns masking off (``quality.mask_pii: false``).
* A system that cannot be reached is named in ``unavailable`` with the reason (its connection
  URL masked); its values show as ``unreachable`` and nothing is said to differ. The record's
  history comes from the store, so it still shows.
"""

from __future__ import annotations

from typing import Any

from truesync.config import Config
from truesync.connectors.errors import SystemUnavailable
from truesync.connectors.registry import open_source, open_target
from truesync.core.canonical import to_canonical
from truesync.reporting.masking import mask, mask_exception, mask_field_reason, personal_names, record_names
from truesync.store import Store, history

NOT_FOUND, UNREACHABLE = "not found", "unreachable"


def trace(config: Config, store: Store, flow: str, entity: str, key: str) -> dict[str, Any]:
    """Everything known about one record of a flow, as a JSON-ready document."""
    _require(config, flow, entity)
    personal, names = personal_names(config, flow, entity), record_names(config, flow, entity)
    spec, unavailable = config.flows[flow], {}
    return {
        "flow": flow,
        "entity": entity,
        "key": key,
        "source": spec.source,
        "target": spec.target,
        "runs": [_masked_result(config, entity, r, personal) for r in history.record_runs(store, flow, entity, key)],
        "ledger": history.ledger_entry(store, flow, entity, key),
        "overwrites": [_masked_overwrite(r, personal) for r in history.overwrites(store, flow, entity, key)],
        "exceptions": [mask_exception(r, personal, names) for r in history.record_exceptions(store, flow, entity, key)],
        "values": live_values(config, flow, entity, key, personal, unavailable),
        "unavailable": unavailable,
    }


def _require(config: Config, flow: str, entity: str) -> None:
    if flow not in config.flows:
        raise LookupError(f"no flow '{flow}'; flows: {', '.join(config.flows)}")
    if entity not in config.flows[flow].entities:
        raise LookupError(
            f"flow '{flow}' has no entity '{entity}'; its entities: {', '.join(config.flows[flow].entities)}"
        )


def live_values(
    config: Config, flow: str, entity: str, key: str, personal: dict[str, str | None], unavailable: dict[str, str]
) -> list[dict[str, Any]]:
    """One row per field both systems map: the source's and the target's value now, and whether they
    differ; no rows when no system reached holds the record. A system that cannot be reached is
    added to ``unavailable`` (system -> reason).
    """
    spec = config.flows[flow]
    synced = set(config.synced_fields(flow, entity))
    hidden = spec.compare.deletes_of(entity).mark
    source = _read(config, spec.source, entity, key, None, open_source, unavailable)
    target = _read(config, spec.target, entity, key, hidden, open_target, unavailable)
    rows: list[dict[str, Any]] = []
    if not source and not target:
        return rows
    for field in [*config.entities[entity].key_fields, *config.mapped_fields(flow, entity)]:
        mine, theirs = (UNREACHABLE if side is None else side.get(field, NOT_FOUND) for side in (source, target))
        rows.append(
            {
                "field": field,
                "owner": config.owner(flow, entity, field),
                "source": _masked_value(mine, field, personal),
                "target": _masked_value(theirs, field, personal),
                "differs": field in synced and UNREACHABLE not in (mine, theirs) and mine != theirs,
            }
        )
    return rows


def _read(
    config: Config, system: str, entity: str, key: str, hidden: Any, opener: Any, unavailable: dict[str, str]
) -> dict[str, Any] | None:
    """The record's canonical values in one system (empty when it holds no such record, None when
    the system cannot be reached)."""
    mapping = config.entity_mapping(system, entity)
    fields = [f for f in config.entities[entity].fields if f in mapping.fields]
    try:
        raw = opener(config, system).fetch(mapping, [key], hidden)
    except SystemUnavailable as exc:
        unavailable[system] = str(exc)
        return None
    if raw.empty:
        return {}
    canon = to_canonical(raw.iloc[:1], mapping, config.entities[entity], fields)
    values = canon.records.iloc[0].to_dict()
    for _, problem in canon.errors.iterrows():  # a row's first problem (the reason quotes the value)
        values[problem["field"]] = f"unreadable: {problem['reason']}"
    return values


def _masked_value(value: Any, field: str, personal: dict[str, str | None]) -> Any:
    if value is None or value in (NOT_FOUND, UNREACHABLE) or field not in personal:
        return value
    return mask(str(value), personal[field])


def _masked_result(config: Config, entity: str, row: dict[str, Any], personal: dict[str, str | None]) -> dict[str, Any]:
    if personal:
        row["reason"] = mask_field_reason(config, entity, row["field"], row["reason"], row["value"])
        row["value"] = _masked_value(row["value"], row["field"] or "", personal)
    return row


def _masked_overwrite(row: dict[str, Any], personal: dict[str, str | None]) -> dict[str, Any]:
    for name in ("overwritten_value", "restored_value"):
        row[name] = _masked_value(row[name], row["field"], personal)
    return row


def render_text(found: dict[str, Any]) -> str:
    """The trace for a terminal: runs, ledger, overwrites, exceptions, then the values side by side."""
    sections = [
        f"{found['flow']} {found['entity']} {found['key']}: {found['source']} → {found['target']}",
        _section("runs", [_run_line(r) for r in found["runs"]], "none saw this record"),
        _section("ledger", [_ledger_line(found["ledger"])] if found["ledger"] else [], "none (never synced)"),
        _section("overwritten in the target", [_overwrite_line(o) for o in found["overwrites"]], "nothing"),
        _section("exceptions", [_exception_line(e) for e in found["exceptions"]], "none"),
        _section(
            "values now (! differs)",
            [_value_line(v) for v in _VALUE_HEADER + found["values"]] if found["values"] else [],
            f"in neither {found['source']} nor {found['target']}",
        ),
    ]
    down = [f"unreachable {system}: {reason}" for system, reason in found["unavailable"].items()]
    return "\n\n".join(sections + down)


_VALUE_HEADER = [{"field": "field", "owner": "owner", "source": "source", "target": "target", "differs": False}]
_TIME = "%Y-%m-%d %H:%M"


def _section(title: str, lines: list[str], empty: str) -> str:
    return "\n".join([f"{title}:", *(f"  {line}" for line in lines or [empty])])


def _run_line(r: dict[str, Any]) -> str:
    kind = r["kind"] + (" dry run" if r["dry_run"] else "")
    flags = (" overdue" if r["overdue"] else "") + (" quiet" if r["quiet"] else "")
    why = f"; {r['reason']}" if r["reason"] else ""  # the reason names its check
    codes = f"; codes {r['code_versions']}" if r.get("code_versions") else ""
    window = f"{r['window_start']:{_TIME}} .. {r['window_end']:{_TIME}}"
    decided = f"{r['class']} → {r['outcome']}{flags}{why}{codes}"
    return f"{r['started_at']:{_TIME}}  {r['run_id']} [{kind}] window {window}: {decided}"


def _ledger_line(entry: dict[str, Any]) -> str:
    codes = f", codes {entry['code_versions']}" if entry.get("code_versions") else ""
    return f"synced by {entry['run_id']} at {entry['synced_at']:{_TIME}} (mapping {entry['mapping_version']}{codes})"


def _overwrite_line(o: dict[str, Any]) -> str:
    return f"{o['at']:{_TIME}}  {o['field']}: {o['overwritten_value']!r} → {o['restored_value']!r} ({o['run_id']})"


def _exception_line(e: dict[str, Any]) -> str:
    seen = f"attempts {e['attempts']}, last seen {e['last_seen']:{_TIME}}"
    return f"#{e['id']} {e['status']}: {e['class']}; {e['reason']} ({seen})"


def _value_line(v: dict[str, Any]) -> str:
    mark = "!" if v["differs"] else " "
    return f"{mark} {v['field']:<20} {v['owner']:<12} {_cell(v['source']):<30} {_cell(v['target'])}"


def _cell(value: Any) -> str:
    text = "∅" if value is None else str(value)
    return text if len(text) <= 30 else text[:29] + "…"
