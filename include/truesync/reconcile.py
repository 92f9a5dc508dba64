"""Reconciliation: before a record is written, check it against the target record it settles.

A payment names the order it pays several ways (invoice ID, order ID, external customer
ID). The flow's ``reconcile`` rule finds the settled record by one reference
(``match_on``) and requires every other reference to point at the same record; a record
that is closed in finance (``closing``, e.g. a refund that was paid out) must not meet a
settled record that still shows an open balance. A record failing either check is
``mismatched``: no timing explains it, so it goes to the exception queue with the
references in the reason instead of being written. Records already in sync are not
checked: there is nothing to write, and the target's balance already includes them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pandas as pd

from truesync.canonical import to_canonical
from truesync.classify import MISMATCHED, Classification
from truesync.config import ReconcileConfig
from truesync.connectors import Connector
from truesync.extract import EntityJob

if TYPE_CHECKING:  # load.py calls this module: a runtime import would be circular
    from truesync.load import Quarantine

REFERENCE_CHECK, BALANCE_CHECK = "reference_match", "open_balance"


def hold_contradictions(
    job: EntityJob,
    target: Connector,
    source: pd.DataFrame,
    verdict: Classification,
    payload: pd.Series,
    held: Quarantine,
) -> None:
    """Mark and hold the records to be written whose references contradict the target."""
    rules = job.config.flows[job.flow].reconcile.get(job.entity)
    if rules is None:
        return
    result = verdict.result
    pending = source.loc[result.index[result["write"] & ~result.index.isin(list(held.by_key))]]
    if pending.empty:
        return
    settled = _settled(job, target, rules, pending)
    for key, record in pending.iterrows():
        found = _contradiction(rules, record, settled, job.config.entities[rules.entity].key, target.name)
        if found is None:
            continue
        check, reason = found
        result.at[key, "class"] = MISMATCHED
        result.at[key, "overdue"] = False
        held.add(key, MISMATCHED, check, rules.match_on, reason, payload[key])


def _settled(job: EntityJob, target: Connector, rules: ReconcileConfig, pending: pd.DataFrame) -> pd.DataFrame:
    """The target records the pending ones name by ``match_on``, in canonical form."""
    mapping = job.config.entity_mapping(job.config.flows[job.flow].target, rules.entity)
    spec = job.config.entities[rules.entity]
    values = sorted({str(v) for v in pending[rules.match_on].dropna()})
    raw = target.fetch_by(mapping, mapping.fields[rules.references[rules.match_on]], values)
    fields = list(dict.fromkeys([spec.key, *rules.references.values(), *([rules.balance] if rules.balance else [])]))
    return to_canonical(raw, mapping, spec, fields).records


def _named(rules: ReconcileConfig, record: pd.Series) -> str:
    return ", ".join(f"{f} '{record[f]}'" for f in rules.references if pd.notna(record.get(f)))


def _contradiction(
    rules: ReconcileConfig, record: pd.Series, settled: pd.DataFrame, settled_key: str, target: str
) -> tuple[str, str] | None:
    """The failed check and its reason, or None when the record agrees with what it settles."""
    value = record[rules.match_on]
    matches = settled[settled[rules.references[rules.match_on]] == value]
    if len(matches) != 1:
        found = "no" if matches.empty else f"{len(matches)}"
        return (
            REFERENCE_CHECK,
            f"{_named(rules, record)}: {rules.match_on} matches {found} {rules.entity} in '{target}'",
        )
    hit = matches.iloc[0]
    for field, other in rules.references.items():
        known = pd.notna(record.get(field)) and pd.notna(hit[other])  # a reference one side lacks cannot contradict
        if field != rules.match_on and known and hit[other] != record[field]:
            return REFERENCE_CHECK, (
                f"{rules.match_on} '{value}' points at {rules.entity} '{hit[settled_key]}', but {field} is "
                f"'{record[field]}' ({rules.entity} '{hit[settled_key]}' has {other} '{hit[other]}')"
            )
    closing = bool(rules.closing) and all(record.get(f) == v for f, v in rules.closing.items())
    balance = hit[rules.balance] if rules.balance else None
    if closing and pd.notna(balance) and Decimal(balance) > 0:
        state = ", ".join(f"{f} {v}" for f, v in rules.closing.items())
        return BALANCE_CHECK, (
            f"closed in finance ({state}; {_named(rules, record)}), but {rules.entity} '{hit[settled_key]}' "
            f"in '{target}' still shows an open balance of {balance}"
        )
    return None
