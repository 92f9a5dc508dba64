"""Personal data in reports: enough left to recognise a record, not enough to read it.

Reports and Data Docs are shared more widely than the systems themselves, so values of
fields marked ``pii`` are masked there by default (``quality.mask_pii: false`` turns it off).
The store and the exception queue keep the real values: people fix records from them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from truesync.config import Config, check_columns

_HIDDEN = "***"


def mask(value: str | None, fmt: str | None = None) -> str | None:
    """A masked form of ``value``: first letters of words, the domain's first letter, a phone's last digits."""
    if value is None:
        return None
    text = str(value)
    if fmt == "email" or (fmt is None and "@" in text):
        return _mask_email(text)
    if fmt == "phone":
        digits = re.sub(r"\D", "", text)
        return _HIDDEN + digits[-2:] if len(digits) > 4 else _HIDDEN
    return " ".join(word[:1] + _HIDDEN for word in text.split()) or _HIDDEN


def _mask_email(text: str) -> str:
    local, _, domain = text.partition("@")
    name, dot, tld = domain.rpartition(".")
    masked_domain = (name[:1] + _HIDDEN + dot + tld) if dot else domain[:1] + _HIDDEN
    return f"{local[:1]}{_HIDDEN}@{masked_domain}" if domain else local[:1] + _HIDDEN


def mask_reason(reason: str | None, value: str | None, fmt: str | None = None) -> str | None:
    """The reason text with the quoted offending value (``'value'``) replaced by its masked form.

    Only the quoted form is replaced, so a short value never rewrites field or column names.
    """
    if reason is None or not value:
        return reason
    return reason.replace(f"'{value}'", f"'{mask(value, fmt) or _HIDDEN}'")


def mask_field_reason(
    config: Config, entity: str, field: str | None, reason: str | None, value: str | None
) -> str | None:
    """``reason`` with its offending value masked when ``field`` holds personal data (else as it is).

    No value: the field was null, nothing to hide.
    """
    spec = config.entities[entity].fields.get(field or "") if entity in config.entities else None
    if reason is None or spec is None or not spec.personal:
        return reason
    return mask_reason(reason, value, spec.format)


def mask_examples(config: Config, flow: str, entity: str, items: list[dict[str, Any]]) -> None:
    """Check examples touching a personal field are masked before they reach a report or Data Docs.

    An example of a check reading several columns is masked whole; one column keeps its format's shape.
    """
    if not config.flows[flow].quality.mask_pii:
        return
    fields = config.entities[entity].fields
    for item in items:
        columns = check_columns(item["column"], item.get("kwargs") or {})
        personal = [fields[c] for c in columns if c in fields and fields[c].personal]
        if not personal:
            continue
        fmt = personal[0].format if len(columns) == 1 else None
        for example in item["examples"]:
            example["value"] = mask(example["value"], fmt)


def personal_names(config: Config, flow: str, entity: str) -> dict[str, str | None]:
    """Names that hold personal data in the flow's records, with their format: each personal field,
    and its column in the source and in the target. Empty when the flow turns masking off.
    """
    spec = config.flows[flow]
    if not spec.quality.mask_pii:
        return {}
    names: dict[str, str | None] = {}
    for field, field_spec in config.entities[entity].fields.items():
        if not field_spec.personal:
            continue
        for system in (spec.source, spec.target):
            column = config.entity_mapping(system, entity).fields.get(field)
            if column:
                names[column] = field_spec.format
        names[field] = field_spec.format
    return names


def mask_payload(payload: str, personal: dict[str, str | None]) -> str:
    """A queued record's JSON payload with the values of ``personal`` names masked."""
    try:
        record = json.loads(payload)
    except ValueError:
        return payload if not personal else _HIDDEN  # unreadable: nothing personal may show through
    if not isinstance(record, dict):
        return payload
    masked = {k: mask(v, personal[k]) if k in personal and v is not None else v for k, v in record.items()}
    return json.dumps(masked, default=str)


def mask_exception(row: dict[str, Any], personal: dict[str, str | None], names: set[str]) -> dict[str, Any]:
    """A queued record as people may see it: its reason and payload with ``personal`` names masked.

    A reason about a personal field has every quoted text in it masked except ``names`` (those
    of fields and columns, ``record_names``): the value it quotes may be the source's raw text,
    not the payload's.
    """
    if personal:
        if row["field"] in personal:
            row["reason"] = _mask_quoted(row["reason"], personal[row["field"]], names)
        row["payload"] = mask_payload(row["payload"], personal)
    return row


def record_names(config: Config, flow: str, entity: str) -> set[str]:
    """Every field name of the entity and every column its flow's systems map it to."""
    spec = config.flows[flow]
    names = set(config.entities[entity].fields)
    for system in (spec.source, spec.target):
        mapping = config.entity_mapping(system, entity)
        names |= set(mapping.fields.values()) | {mapping.table, mapping.cursor or "", *mapping.key_columns}
    return names


def _mask_quoted(reason: str | None, fmt: str | None, names: set[str]) -> str | None:
    if reason is None:
        return None
    return _QUOTED.sub(lambda m: m.group(0) if m.group(1) in names else f"'{mask(m.group(1), fmt) or _HIDDEN}'", reason)


_QUOTED = re.compile(r"'([^']*)'")
