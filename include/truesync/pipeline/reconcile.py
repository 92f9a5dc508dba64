"""Reconciliation: before a record is written, check it against the target record it settles.

A payment names the order it pays several ways (invoice ID, order ID, external customer
ID). The flow's ``reconcile`` rule finds the settled record by one reference
(``match_on``) and requires every other reference to point at the same record. A record
closed in finance (``closing``, e.g. a refund that was paid out) must not pay out more than
the settled record had received: its balance before this record, plus this record's
amount, may not exceed the settled record's total. A record failing either check is
``mismatched``: no timing explains it, so it goes to the exception queue with the
references in the reason instead of being written. A record whose ``match_on`` finds no
settled record yet waits for it (``parent_exists``), as a child waits for its parent.
Records already in sync are not checked: there is nothing to write.

The balance a record meets is judged before that record's own effect, by the target's
own rule (``settling`` records lower it by their amount, ``closing`` records raise it):
the effect of the target's current version of every record about to be written is taken
out, the captures about to be written are put in, and the refunds of one settled record
are judged one after another, each seeing the ones before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pandas as pd

from truesync.config import ReconcileConfig
from truesync.connectors.base import Target
from truesync.core.canonical import to_canonical
from truesync.core.classify import MISMATCHED, Classification
from truesync.pipeline.holds import PARENT_EXISTS
from truesync.pipeline.job import ChunkSync, EntityJob

REFERENCE_CHECK, BALANCE_CHECK, PARENT_CHECK = "reference_match", "open_balance", PARENT_EXISTS
Passed = tuple[str, pd.Series, pd.Series]  # key, record, the settled record it matched


def hold_contradictions(sync: ChunkSync, source: pd.DataFrame, verdict: Classification, current: pd.DataFrame) -> None:
    """Mark and hold the records to be written whose references contradict the target.

    ``current`` holds the target's versions of the records (canonical, by key).
    """
    job, target = sync.job, sync.target
    rules = job.config.flows[job.flow].reconcile.get(job.entity)
    if rules is None:
        return
    result = verdict.result
    pending = source.loc[result.index[result["write"] & ~result.index.isin(sync.held.keys)]]
    if pending.empty:
        return
    settled = _settled(job, target, rules, pending)
    settled_key = job.config.entities[rules.entity].key
    passed: list[Passed] = []
    found: list[tuple[str, str, str]] = []
    for key, record in pending.iterrows():
        hit, problem = _reference(rules, record, settled, settled_key, target.name)
        if problem is not None:
            found.append((str(key), *problem))
        elif hit is not None:
            passed.append((str(key), record, hit))
    found += _balances(rules, passed, current, settled_key, target.name)
    for key, check, reason in found:
        if check != PARENT_CHECK:
            result.at[key, "class"] = MISMATCHED
            result.at[key, "overdue"] = False
        sync.hold(key, result.at[key, "class"], check, rules.match_on, reason)


def _settled(job: EntityJob, target: Target, rules: ReconcileConfig, pending: pd.DataFrame) -> pd.DataFrame:
    """The target records the pending ones name by ``match_on``, in canonical form."""
    mapping = job.config.entity_mapping(job.config.flows[job.flow].target, rules.entity)
    spec = job.config.entities[rules.entity]
    values = sorted({str(v) for v in pending[rules.match_on].dropna()})
    raw = target.fetch_by(mapping, mapping.fields[rules.references[rules.match_on]], values)
    extra = [f for f in (rules.balance, rules.total) if f]
    fields = list(dict.fromkeys([spec.key, *rules.references.values(), *extra]))
    return to_canonical(raw, mapping, spec, fields).records


def _named(rules: ReconcileConfig, record: pd.Series) -> str:
    return ", ".join(f"{f} '{record[f]}'" for f in rules.references if pd.notna(record.get(f)))


def _reference(
    rules: ReconcileConfig, record: pd.Series, settled: pd.DataFrame, settled_key: str, target: str
) -> tuple[pd.Series | None, tuple[str, str] | None]:
    """The settled record this one matches, or the failed check and its reason."""
    value = record[rules.match_on]
    matches = settled[settled[rules.references[rules.match_on]] == value]
    if matches.empty:
        return None, (PARENT_CHECK, f"{_named(rules, record)}: no {rules.entity} in '{target}' has {rules.match_on} "
                                    f"'{value}' yet; waits for it")  # fmt: skip
    if len(matches) > 1:
        return None, (
            REFERENCE_CHECK,
            f"{_named(rules, record)}: {rules.match_on} matches {len(matches)} {rules.entity} in '{target}'",
        )
    hit = matches.iloc[0]
    for field, other in rules.references.items():
        known = pd.notna(record.get(field)) and pd.notna(hit[other])  # a reference one side lacks cannot contradict
        if field != rules.match_on and known and hit[other] != record[field]:
            return None, (REFERENCE_CHECK, (
                f"{rules.match_on} '{value}' points at {rules.entity} '{hit[settled_key]}', but {field} is "
                f"'{record[field]}' ({rules.entity} '{hit[settled_key]}' has {other} '{hit[other]}')"
            ))  # fmt: skip
    return hit, None


def _is(state: dict[str, str], record: pd.Series | None) -> bool:
    return record is not None and bool(state) and all(record.get(f) == v for f, v in state.items())


def _effect(rules: ReconcileConfig, record: pd.Series | None) -> Decimal:
    """What a record does to the settled record's balance by the target's rule."""
    if record is None or rules.amount is None or pd.isna(record.get(rules.amount)):
        return Decimal(0)
    amount = Decimal(str(record[rules.amount]))
    return amount if _is(rules.closing, record) else -amount if _is(rules.settling, record) else Decimal(0)


def _balances(
    rules: ReconcileConfig, passed: list[Passed], current: pd.DataFrame, settled_key: str, target: str
) -> Iterator[tuple[str, str, str]]:
    """Closing records that would pay out more than their settled record received."""
    if rules.balance is None or rules.total is None or not rules.closing:
        return
    groups: dict[str, list[Passed]] = {}
    for item in passed:
        groups.setdefault(str(item[2][settled_key]), []).append(item)
    for name, group in groups.items():
        hit = group[0][2]
        if pd.isna(hit[rules.balance]) or pd.isna(hit[rules.total]):
            continue
        running = Decimal(str(hit[rules.balance]))
        for key, record, _ in group:
            mine = current.loc[key] if key in current.index else None
            running -= _effect(rules, mine)
            running += _effect(rules, record) if _is(rules.settling, record) else 0
        for key, record, _ in group:
            if not _is(rules.closing, record):
                continue
            amount = _effect(rules, record)
            if running + amount > Decimal(str(hit[rules.total])):
                state = ", ".join(f"{f} {v}" for f, v in rules.closing.items())
                yield (
                    key,
                    BALANCE_CHECK,
                    (
                        f"closed in finance ({state}; {_named(rules, record)}), but {rules.entity} '{name}' "
                        f"in '{target}' still shows an open balance of {running} of {hit[rules.total]}"
                    ),
                )
            else:
                running += amount
