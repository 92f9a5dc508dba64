"""Classify the staged delta against the target and create-or-update it, chunk by chunk.

Per chunk: bad records go to the exception queue; the rest are matched by key with the
target and the ledger, classified, checked for parents, written with the dialect's
upsert, and only then recorded in the ledger. Counts obey the conservation law:
``extracted = created + updated + unchanged + quarantined``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from truesync.connectors.errors import RecordsRejected
from truesync.connectors.registry import Connector, open_system
from truesync.core.canonical import to_canonical, to_system
from truesync.core.classify import IN_SYNC, INVALID, MISMATCHED, MISSING, Classification, classify
from truesync.pipeline import reconcile
from truesync.pipeline.extract import NULL_KEY_PREFIX, EntityJob
from truesync.pipeline.window import Window
from truesync.store import ledger, queue, runs, staging
from truesync.store.core import utcnow
from truesync.store.staging import EVERYTHING, Partition
from truesync.support.frames import records

WRITE_BATCH = 1000


@dataclass
class Tally:
    """Counts of one entity in one run; kept as a Counter so chunks add up."""

    counts: Counter = field(default_factory=Counter)
    load_seconds: float = 0.0

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += int(n)


@dataclass
class Quarantine:
    """Rows of a chunk that will not be loaded, with the check that stopped them."""

    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, key: str, klass: str, check: str, column: str | None, reason: str, payload: str) -> None:
        """Hold a record; the first reason found for a record is the one reported."""
        self.by_key.setdefault(
            key,
            {"key": key, "class": klass, "check_name": check, "field": column, "reason": reason, "payload": payload},
        )

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.by_key.values())


def sync_entity(job: EntityJob, window: Window, dry_run: bool, part: Partition = EVERYTHING) -> dict[str, int]:
    """Classify and load the staged records of one partition; returns its counts.

    Partitions of one entity are independent key ranges, so mapped tasks can run them on
    several workers at once; entities still load one after another.
    """
    began = time.monotonic()
    flow = job.config.flows[job.flow]
    target = open_system(job.config, flow.target)
    target.table(job.mapping("target"))  # reach the target first: an unreachable one fails even an empty delta
    tally = Tally()
    overdue_before = window.end - flow.freshness_sla
    staging.clear_results(job.store, job.run_id, job.entity, part)
    for chunk in staging.staged_chunks(job.store, job.run_id, job.entity, flow.chunk_size, part):
        _sync_chunk(job, target, chunk, overdue_before, dry_run, tally)
    counts: dict[str, Any] = dict(tally.counts)
    counts["sync_seconds"] = time.monotonic() - began
    counts["load_seconds"] = tally.load_seconds
    runs.record_counts(job.store, job.run_id, job.entity, part.name, counts)
    return dict(tally.counts)


def plan_partitions(job: EntityJob) -> list[Partition]:
    """Key ranges of the staged records, ``partition_size`` records each, for mapped sync tasks."""
    return staging.partitions(job.store, job.run_id, job.entity, job.config.flows[job.flow].partition_size)


def resolve_fixed_keyless(job: EntityJob) -> int:
    """Resolve exceptions of rows without a key that this run no longer saw (they got one)."""
    seen = staging.keys_with_prefix(job.store, job.run_id, job.entity, NULL_KEY_PREFIX)
    return queue.resolve_vanished(job.store, job.flow, job.entity, job.run_id, NULL_KEY_PREFIX, seen)


def _sync_chunk(
    job: EntityJob, target: Connector, chunk: pd.DataFrame, overdue_before: Any, dry_run: bool, tally: Tally
) -> None:
    held = Quarantine()
    results: list[dict[str, Any]] = []
    bad = chunk[chunk["check_name"].notna()]
    for row in bad.itertuples(index=False):
        held.add(row.key, INVALID, row.check_name, row.field, row.reason, row.payload)
        results.append(_result(row.key, INVALID, "quarantined", row.check_name, row.field, row.reason, row.value))
    tally.add(INVALID, len(bad))
    if not bad.empty:  # still held from an earlier run: not a new problem for the run's thresholds
        tally.add("blocked_again", len(queue.active_ids(job.store, job.flow, job.entity, list(bad["key"]))))
    good = chunk[chunk["check_name"].isna()]
    if not good.empty:
        results.extend(_sync_good(job, target, good, overdue_before, dry_run, held, tally))
    tally.add("quarantined", len(held.rows))
    if not dry_run:
        tally.add("exceptions_opened", queue.quarantine(job.store, job.flow, job.entity, job.run_id, held.rows))
        synced = [r["key"] for r in results if r["outcome"] != "quarantined"]
        tally.add("exceptions_resolved", queue.resolve_synced(job.store, job.flow, job.entity, job.run_id, synced))
    staging.record_results(job.store, job.run_id, job.entity, results)


def _result(key: str, klass: str, outcome: str, check: Any, column: Any, reason: Any, value: Any) -> dict[str, Any]:
    """A record that never reached classification; it cannot be overdue."""
    return {
        "key": key,
        "class": klass,
        "outcome": outcome,
        "overdue": False,
        "check_name": check,
        "field": column,
        "reason": reason,
        "value": value,
    }


def _sync_good(
    job: EntityJob,
    target: Connector,
    good: pd.DataFrame,
    overdue_before: Any,
    dry_run: bool,
    held: Quarantine,
    tally: Tally,
) -> list[dict[str, Any]]:
    fields = job.config.synced_fields(job.flow, job.entity)
    source = pd.DataFrame([json.loads(p) for p in good["payload"]], index=good["key"].to_numpy())
    source_ts = pd.Series(pd.to_datetime(good["source_ts"].to_numpy()), index=source.index)
    payload = pd.Series(good["payload"].to_numpy(), index=source.index)
    matched, matched_ts = _match_target(job, target, list(source.index), fields, payload, held)
    entries = ledger.lookup(job.store, job.flow, job.entity, list(source.index))
    entries = entries[entries["mapping_version"] == mapping_version(job)]  # another mapping: first contact
    shared = job.config.shared_fields(job.flow, job.entity)
    verdict = classify(source[fields], source_ts, matched, matched_ts, entries, shared, overdue_before)
    ambiguous = verdict.result.index.isin(list(held.by_key))
    verdict.result.loc[ambiguous, "class"] = MISMATCHED
    reconcile.hold_contradictions(job, target, source, verdict, matched, payload, held)
    for klass, n in verdict.result["class"].value_counts().items():
        tally.add(str(klass), n)
    tally.add("overdue", int(verdict.result["overdue"].sum()))
    _hold_conflicts(verdict, payload, held)
    pending = verdict.result.index[verdict.result["write"] & ~verdict.result.index.isin(list(held.by_key))]
    _hold_orphans(job, target, source.loc[pending], verdict, payload, held)
    began = time.monotonic()
    written_ts = _write(job, target, verdict, pending, payload, held, dry_run)
    done = [k for k in verdict.result.index if k not in held.by_key]
    if not dry_run:
        _remember(job, verdict, source_ts, matched_ts, written_ts, done)
    tally.load_seconds += time.monotonic() - began
    return _outcomes(verdict, held, tally)


def _match_target(
    job: EntityJob,
    target: Connector,
    keys: list[str],
    fields: list[str],
    payload: pd.Series,
    held: Quarantine,
) -> tuple[pd.DataFrame, pd.Series]:
    """Target records for the keys, canonical; a key matching several records is held.

    So is a key the target matches only through a case- or accent-insensitive collation
    (MariaDB's default): writing it would update the other record.
    """
    mapping = job.mapping("target")
    raw = target.fetch(mapping, keys)
    canon = to_canonical(raw, mapping, job.spec, [job.spec.key, *fields])
    records = canon.records.assign(_ts=canon.source_ts)
    records[job.spec.key] = records[job.spec.key].astype(str)
    wanted = set(keys)
    strangers = {k.casefold(): k for k in records[job.spec.key] if k not in wanted}
    for key in keys if strangers else []:
        if key.casefold() in strangers:
            reason = f"key '{key}' matches '{strangers[key.casefold()]}' in target '{target.name}' only by collation"
            held.add(key, MISMATCHED, "unique_match", job.spec.key, reason, payload[key])
    records = records[records[job.spec.key].isin(wanted)]
    counts = records[job.spec.key].value_counts()
    for key, n in counts[counts > 1].items():
        held.add(key, MISMATCHED, "unique_match", job.spec.key,
                 f"key '{key}' matches {n} records in target '{target.name}'", payload[key])  # fmt: skip
    unique = records.drop_duplicates(job.spec.key, keep=False).set_index(job.spec.key)
    return unique[fields], unique["_ts"]


def _hold_conflicts(verdict: Classification, payload: pd.Series, held: Quarantine) -> None:
    conflicts = verdict.result[verdict.result["conflict"].notna()]
    for key, row in conflicts.iterrows():
        reason = f"shared field '{row['conflict']}' changed on both sides at the same time"
        held.add(key, row["class"], "shared_field_tie", row["conflict"], reason, payload[key])


def _hold_orphans(
    job: EntityJob,
    target: Connector,
    pending: pd.DataFrame,
    verdict: Classification,
    payload: pd.Series,
    held: Quarantine,
) -> None:
    """A child whose parent is missing in the target, or waits in the queue, waits too.

    Parents this run already handled count as they ended: created or in sync means present
    (even in a dry run, which wrote nothing), quarantined means waiting. GX finds the children
    whose parent is not among the ready ones; the reason then says which of the three it is.
    """
    for ref_field, parent in job.spec.references.items():
        values = pending[ref_field].dropna().astype(str) if ref_field in pending else pd.Series(dtype=object)
        if values.empty:
            continue
        wanted = sorted(set(values))
        parent_mapping = job.config.entity_mapping(job.config.flows[job.flow].target, parent)
        this_run = staging.outcomes(job.store, job.run_id, parent, wanted)
        waiting = queue.active_ids(job.store, job.flow, parent, wanted)
        held_now = {v for v, outcome in this_run.items() if outcome == "quarantined"}
        found = set(target.fetch(parent_mapping, wanted)[parent_mapping.key].astype(str))
        ready = (set(this_run) - held_now) | (found - set(waiting) - held_now)
        children = pd.DataFrame({"key": values.index, ref_field: values.to_numpy()})
        for row in _parents_missing(children, ref_field, parent, ready).index:
            key, value = children.at[row, "key"], children.at[row, ref_field]
            if value in waiting:
                reason = f"waits for {parent} '{value}' in the exception queue (#{waiting[value]})"
            elif value in held_now:
                reason = f"waits for {parent} '{value}', held for the exception queue by this run"
            else:
                reason = f"{parent} '{value}' (field '{ref_field}') does not exist in target '{target.name}'"
            held.add(key, verdict.result.at[key, "class"], "parent_exists", ref_field, reason, payload[key])


def _parents_missing(children: pd.DataFrame, ref_field: str, parent: str, ready: set[str]) -> pd.DataFrame:
    """Rows whose parent is not ready, as GX's unexpected index list finds them."""
    import great_expectations.expectations as gxe  # GX takes seconds to import: not while a DAG file is parsed

    from truesync.quality.checks import BLOCK, Check, run_checks

    present = gxe.ExpectColumnValuesToBeInSet(column=ref_field, value_set=sorted(ready))
    check = Check(present, ref_field, BLOCK, f"must name a {parent} in the target or synced by this run")
    return run_checks([check], children, "key").failures


def _write(
    job: EntityJob,
    target: Connector,
    verdict: Classification,
    pending: pd.Index,
    payload: pd.Series,
    held: Quarantine,
    dry_run: bool,
) -> Any:
    """Encode for the target, upsert in batches, audit overwritten values; returns the write time."""
    keys = [k for k in pending if k not in held.by_key]
    if not keys:
        return None
    mapping = job.mapping("target")
    fields = [job.spec.key, *job.config.synced_fields(job.flow, job.entity)]
    desired = verdict.desired.loc[keys].assign(**{job.spec.key: keys})
    rows, errors = to_system(desired[fields], mapping, target.table(mapping), fields)
    for key, err in errors.iterrows():
        held.add(key, verdict.result.at[key, "class"], err["check_name"], err["field"], err["reason"], payload[key])
    now = utcnow()
    blocked = set(errors.index)
    kept = [k for k in keys if k not in blocked]
    rows = [r for k, r in zip(keys, rows, strict=True) if k not in blocked]
    if mapping.cursor and mapping.cursor not in mapping.fields.values():
        for row in rows:
            row[mapping.cursor] = now
    if not dry_run:
        blocked |= _write_rows(job, target, verdict, dict(zip(kept, rows, strict=True)), payload, held)
        audit = verdict.audit[verdict.audit["key"].isin(set(keys) - blocked)]
        runs.add_audit(
            job.store,
            [
                {"run_id": job.run_id, "flow": job.flow, "entity": job.entity, "at": now, **r} for r in records(audit)
            ],  # fmt: skip
        )
    return now


def _write_rows(
    job: EntityJob,
    target: Connector,
    verdict: Classification,
    rows: dict[str, dict[str, Any]],
    payload: pd.Series,
    held: Quarantine,
) -> set[str]:
    """Write the rows; records the target refuses one by one are held, so they block nothing else.

    Returns the keys held that way.
    """
    mapping = job.mapping("target")
    try:
        target.write(mapping, list(rows.values()), WRITE_BATCH, run_id=job.run_id)
    except RecordsRejected as exc:
        by_system_key = {str(row[mapping.key]): key for key, row in rows.items()}
        refused = {by_system_key[k]: reason for k, reason in exc.rejected.items()}
        for key, reason in refused.items():
            held.add(key, verdict.result.at[key, "class"], "target_rejected", None, reason, payload[key])
        return set(refused)
    return set()


def mapping_version(job: EntityJob) -> str:
    """Both sides' mapping versions: a ledger entry made under other mappings is not trusted."""
    flow = job.config.flows[job.flow]
    source, target = job.config.mappings[flow.source].version, job.config.mappings[flow.target].version
    return f"{flow.source}@{source}->{flow.target}@{target}"


def _remember(
    job: EntityJob,
    verdict: Classification,
    source_ts: pd.Series,
    target_ts: pd.Series,
    written_ts: Any,
    keys: list[str],
) -> None:
    """Ledger entries for every record now in sync, written after the target commit."""
    version = mapping_version(job)
    rows = verdict.result.loc[keys, ["source_hash", "target_hash", "write"]]
    seen = target_ts.reindex(keys).to_numpy(dtype=object)
    frame = pd.DataFrame(
        {
            "key": keys,
            "source_hash": rows["source_hash"].to_numpy(),
            "target_hash": rows["target_hash"].to_numpy(),
            "source_ts": source_ts.reindex(keys).to_numpy(),
            "target_ts": pd.to_datetime(np.where(rows["write"].to_numpy(dtype=bool), written_ts, seen)),
            "mapping_version": version,
            "run_id": job.run_id,
            "synced_at": utcnow(),
        }
    )
    ledger.write(job.store, job.flow, job.entity, records(frame))


def _outcomes(verdict: Classification, held: Quarantine, tally: Tally) -> list[dict[str, Any]]:
    """Each record's outcome; held records are quarantined with the check that held them."""
    result = verdict.result
    is_held = result.index.isin(list(held.by_key))
    klass = result["class"]
    outcome = np.select(
        [is_held, klass == IN_SYNC, klass == MISSING], ["quarantined", "unchanged", "created"], default="updated"
    )
    for name, n in pd.Series(outcome[~is_held]).value_counts().items():
        tally.add(str(name), n)
    reasons = pd.DataFrame(held.rows, columns=["key", "check_name", "field", "reason"]).set_index("key")
    reasons = reasons.reindex(result.index)
    frame = pd.DataFrame(
        {
            "key": result.index,
            "class": klass.to_numpy(),
            "outcome": outcome,
            "overdue": result["overdue"].to_numpy(dtype=bool),
            "check_name": reasons["check_name"].to_numpy(),
            "field": reasons["field"].to_numpy(),
            "reason": reasons["reason"].to_numpy(),
            "value": None,  # checks after extraction name keys and codes, not personal values
        }
    )
    return records(frame)
