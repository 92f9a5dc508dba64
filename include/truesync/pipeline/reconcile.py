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

With a ``finance`` rule the books are a second witness (``docs/design.md``, "Reconciling
against the books"). Their settled record (an invoice) is found by the same ``match_on``
value and every reference must point at it too; books that hold no such record say
nothing. A closing record the target's balance refuses, while the books' ledger holds it
closed, is *closed in finance, open in the target* (``finance_balance``): where the books
own the balance, the record is written and the target's balance set to the books' after it
(audited); otherwise it is held with both balances in the reason. Where the books have not
closed it either, it is ``open_balance`` as before, with the books' balance in the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd

from truesync.config import ReconcileConfig
from truesync.connectors.base import Target
from truesync.connectors.registry import open_target
from truesync.core.canonical import to_canonical, to_system
from truesync.core.classify import MISMATCHED, Classification
from truesync.pipeline.holds import PARENT_EXISTS
from truesync.pipeline.job import ChunkSync, EntityJob, Repair
from truesync.store import runs
from truesync.store.core import utcnow
from truesync.store.rate_limits import shared_ceilings

REFERENCE_CHECK, BALANCE_CHECK, PARENT_CHECK = "reference_match", "open_balance", PARENT_EXISTS
FINANCE_CHECK = "finance_balance"  # closed in the books, open in the target


@dataclass(frozen=True)
class _Side:
    """Where settled records are looked up: the target, or the books (``finance``)."""

    system: str
    entity: str
    references: dict[str, str]  # field of the reconciled entity -> field of the settled one
    records: pd.DataFrame  # the settled records the pending ones name by match_on, canonical
    key: str  # the settled entity's key field

    def name(self, hit: pd.Series) -> str:
        return f"{self.entity} '{hit[self.key]}' in '{self.system}'"


@dataclass(frozen=True)
class _Passed:
    """A record whose references hold: the target's settled record, and the books' where they have one."""

    key: str
    record: pd.Series
    hit: pd.Series
    books: pd.Series | None


@dataclass(frozen=True)
class _Refused:
    """A closing record the target's balance refuses: the balance it met there."""

    passed: _Passed
    running: Decimal


def open_books(job: EntityJob) -> Target | None:
    """The books the flow reconciles this entity against, if its rule names them (read only)."""
    rules = job.config.flows[job.flow].reconcile.get(job.entity)
    if rules is None or rules.finance is None:
        return None
    return open_target(job.config, rules.finance.system, shared_ceilings(job.store))


def hold_contradictions(sync: ChunkSync, source: pd.DataFrame, verdict: Classification, current: pd.DataFrame) -> None:
    """Mark and hold the records to be written whose references contradict the target or the books.

    ``current`` holds the target's versions of the records (canonical, by key). A record
    closed in the books and open in the target whose balance the books own is written, and
    its repair kept in ``sync.repairs``.
    """
    job = sync.job
    rules = job.config.flows[job.flow].reconcile.get(job.entity)
    if rules is None:
        return
    result = verdict.result
    pending = source.loc[result.index[result["write"] & ~result.index.isin(sync.held.keys)]]
    if pending.empty:
        return
    flow, finance = job.config.flows[job.flow], rules.finance
    extra = [f for f in (rules.balance, rules.total) if f]
    target = _side(sync, sync.target, flow.target, rules.entity, rules.references, rules.match_on, extra, pending)
    books = None
    if finance is not None and sync.books is not None:
        books = _side(sync, sync.books, finance.system, finance.entity, finance.references, rules.match_on,
                      [finance.balance, finance.total], pending)  # fmt: skip
    passed: list[_Passed] = []
    found: list[tuple[str, str, str]] = []
    for key, record in pending.iterrows():
        hit, problem = _reference(rules.match_on, target, record)
        mine, theirs = (None, None) if books is None or problem else _reference(rules.match_on, books, record)
        problem = problem or (theirs if theirs is not None and theirs[0] != PARENT_CHECK else None)
        if problem is not None:
            found.append((str(key), *problem))
        elif hit is not None:
            passed.append(_Passed(str(key), record, hit, mine))
    refusals = list(_balances(rules, passed, current, target.key))
    ledger = None  # the books' entries of the refused records only: most chunks have none
    if books is not None and sync.books is not None and refusals:
        ledger = _books_ledger(sync, sync.books, books.system, [r.passed.key for r in refusals])
    for refused in refusals:
        check, reason, repair = _judge(rules, target, books, ledger, refused)
        if repair is None:
            found.append((refused.passed.key, check, reason))
        else:  # written all the same, with what was found
            sync.repairs[repair.settled], sync.noted[repair.record] = repair, (check, reason)
    for key, check, reason in found:
        if check != PARENT_CHECK:
            result.at[key, "class"] = MISMATCHED
            result.at[key, "overdue"] = False
        sync.hold(key, result.at[key, "class"], check, rules.match_on, reason)


def _side(
    sync: ChunkSync, reader: Target, system: str, entity: str, references: dict[str, str], match_on: str,
    extra: list[str], pending: pd.DataFrame,
) -> _Side:  # fmt: skip
    """The settled records of ``system`` the pending records name by ``match_on``, in canonical form."""
    config = sync.job.config
    mapping, spec = config.entity_mapping(system, entity), config.entities[entity]
    values = sorted({str(v) for v in pending[match_on].dropna()})
    raw = reader.fetch_by(mapping, mapping.fields[references[match_on]], values)
    fields = list(dict.fromkeys([spec.key, *references.values(), *extra]))
    return _Side(system, entity, references, to_canonical(raw, mapping, spec, fields).records, spec.key)


def _books_ledger(sync: ChunkSync, reader: Target, system: str, keys: list[str]) -> pd.DataFrame:
    """The books' entries of these records (their mapping of this entity), canonical, by key."""
    job = sync.job
    mapping = job.config.entity_mapping(system, job.entity)
    fields = [f for f in job.spec.fields if f in mapping.fields]
    records = to_canonical(reader.fetch(mapping, keys), mapping, job.spec, fields).records
    return records.drop_duplicates(job.spec.key, keep=False).set_index(job.spec.key)


def _named(references: dict[str, str], record: pd.Series) -> str:
    return ", ".join(f"{f} '{record[f]}'" for f in references if pd.notna(record.get(f)))


def _reference(match_on: str, side: _Side, record: pd.Series) -> tuple[pd.Series | None, tuple[str, str] | None]:
    """The settled record this one matches on ``side``, or the failed check and its reason."""
    value = record[match_on]
    matches = side.records[side.records[side.references[match_on]] == value]
    if matches.empty:
        return None, (PARENT_CHECK, f"{_named(side.references, record)}: no {side.entity} in '{side.system}' has "
                                    f"{match_on} '{value}' yet; waits for it")  # fmt: skip
    if len(matches) > 1:
        return None, (
            REFERENCE_CHECK,
            f"{_named(side.references, record)}: {match_on} matches {len(matches)} {side.entity} in '{side.system}'",
        )
    hit = matches.iloc[0]
    for field, other in side.references.items():
        known = pd.notna(record.get(field)) and pd.notna(hit[other])  # a reference one side lacks cannot contradict
        if field != match_on and known and hit[other] != record[field]:
            return None, (REFERENCE_CHECK, (
                f"{match_on} '{value}' points at {side.name(hit)}, but {field} is '{record[field]}' "
                f"({side.entity} '{hit[side.key]}' has {other} '{hit[other]}')"
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
    rules: ReconcileConfig, passed: list[_Passed], current: pd.DataFrame, settled_key: str
) -> Iterator[_Refused]:
    """Closing records that would pay out more than their settled record received in the target."""
    if rules.balance is None or rules.total is None or not rules.closing:
        return
    groups: dict[str, list[_Passed]] = {}
    for item in passed:
        groups.setdefault(str(item.hit[settled_key]), []).append(item)
    for group in groups.values():
        hit = group[0].hit
        if pd.isna(hit[rules.balance]) or pd.isna(hit[rules.total]):
            continue
        running = Decimal(str(hit[rules.balance]))
        for item in group:
            mine = current.loc[item.key] if item.key in current.index else None
            running -= _effect(rules, mine)
            running += _effect(rules, item.record) if _is(rules.settling, item.record) else 0
        for item in group:
            if not _is(rules.closing, item.record):
                continue
            amount = _effect(rules, item.record)
            if running + amount > Decimal(str(hit[rules.total])):
                yield _Refused(item, running)
            else:
                running += amount


def _judge(
    rules: ReconcileConfig, target: _Side, books: _Side | None, ledger: pd.DataFrame | None, refused: _Refused
) -> tuple[str, str, Repair | None]:
    """The check a closing record the target's balance refuses fails, and why; with a repair instead of a
    hold where the books closed it and own the balance."""
    item, state = refused.passed, ", ".join(f"{f} {v}" for f, v in rules.closing.items())
    said = (
        f"closed in finance ({state}; {_named(rules.references, item.record)}), but {target.name(item.hit)} "
        f"still shows an open balance of {refused.running} of {item.hit[rules.total]}"
    )
    finance, invoice = rules.finance, item.books
    if books is None or invoice is None or finance is None or ledger is None:
        return BALANCE_CHECK, said, None
    if pd.isna(invoice[finance.balance]) or pd.isna(invoice[finance.total]):  # books without a balance say nothing
        return BALANCE_CHECK, said, None
    entry = ledger.loc[item.key] if item.key in ledger.index else None
    if not _is(rules.closing, entry):
        theirs = f"balance {invoice[finance.balance]} of {invoice[finance.total]}"
        return BALANCE_CHECK, f"{said}; {books.name(invoice)} has not booked it closed either ({theirs})", None
    before = Decimal(str(invoice[finance.balance])) - _effect(rules, entry)
    booked = f"{said}, while {books.name(invoice)} booked it against a balance of {before} of {invoice[finance.total]}"
    if not finance.owns_balance:
        return FINANCE_CHECK, booked, None
    after = str(invoice[finance.balance])
    repair = Repair(item.key, rules.entity, str(item.hit[target.key]), str(rules.balance), after)
    return FINANCE_CHECK, f"{booked}; its balance is set to {after}, the books' after it", repair


def repair_balances(sync: ChunkSync, written: set[str]) -> None:
    """Set each target balance the books own to theirs, once the record that found it is written; audited.

    The settled record is read again first: what the write did to its balance is the target's
    own bookkeeping, and one already equal to the books' is left alone. It is written whole,
    its balance changed, so an upsert that replaces a record keeps the rest of it. A repair
    the target refuses fails the run (``RecordsRejected`` names it): the record it follows
    is written already, and a balance left open must not pass unnoticed.
    """
    repairs = [r for r in sync.repairs.values() if r.record in written]
    if not repairs:
        return
    job, first = sync.job, repairs[0]
    mapping = job.config.entity_mapping(job.config.flows[job.flow].target, first.entity)
    spec, field = job.config.entities[first.entity], first.field
    fields = [f for f in spec.fields if f in mapping.fields]
    found = to_canonical(sync.target.fetch(mapping, [r.settled for r in repairs]), mapping, spec, fields).records
    current = found.drop_duplicates(spec.key, keep=False).set_index(spec.key, drop=False)
    due = [r for r in repairs if r.settled in current.index and current.at[r.settled, field] != r.after]
    if not due:
        return
    desired = current.loc[[r.settled for r in due], fields]
    audit = pd.DataFrame({"key": desired.index, "field": field, "overwritten_value": desired[field].to_numpy(),
                          "restored_value": [r.after for r in due]})  # fmt: skip
    rows, _ = to_system(desired.assign(**{field: audit["restored_value"].to_numpy()}), mapping,
                        sync.target.columns(mapping), fields)  # fmt: skip
    sync.target.write(mapping, rows, len(rows), run_id=job.run_id)
    runs.add_audit(job.store, audit.assign(run_id=job.run_id, flow=job.flow, entity=first.entity, at=utcnow()))
