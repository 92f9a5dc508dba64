"""Classify the staged delta against the target and create-or-update it, chunk by chunk.

Per chunk: bad records go to the exception queue; the rest are matched by key with the
target and the ledger, classified, held where they must wait (``holds``, ``reconcile``),
written with the target's create-or-update, and only then recorded in the ledger. Counts
obey the conservation law: ``extracted = created + updated + unchanged + quarantined``.
A reprocess run (``pipeline.reprocess``) marks nothing overdue and audits every value it replaces.

The values a write replaced are audited as soon as the target has committed it. The rest of
the store's part of a chunk (ledger, queue, results) is written behind the next chunk's
classification (``support.overlap``), in chunk order. Nothing the next chunk reads waits on
it: its keys are others, and its parents belong to entities loaded before it (a reference
must be in ``depends_on``, where a cycle is refused).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from truesync.connectors.errors import RecordsRejected
from truesync.core.canonical import EPOCH, to_canonical, to_system
from truesync.core.classify import IN_SYNC, INVALID, MISMATCHED, MISSING, Classification, Echoes, classify
from truesync.core.keys import split_all, system_keys
from truesync.pipeline import progress, reconcile
from truesync.pipeline.holds import hold_ambiguous_matches, hold_case_twins, hold_orphans, hold_shared_ties
from truesync.pipeline.job import REPROCESS, ChunkSync, EntityJob, Tally
from truesync.pipeline.window import Window
from truesync.store import last_seen, ledger, queue, runs, staging
from truesync.store.core import utcnow
from truesync.store.staging import EVERYTHING, Partition
from truesync.support.collector import setup_frozen
from truesync.support.failpoints import failpoint
from truesync.support.frames import records
from truesync.support.overlap import WriteBehind

WRITE_BATCH = 10_000  # rows a target write takes at once (one transaction on SQL targets)


class StagingDropped(RuntimeError):
    """A sync task of a finished run was run again alone: the run's staged records are gone."""


@setup_frozen
def sync_entity(job: EntityJob, window: Window, dry_run: bool, part: Partition = EVERYTHING) -> dict[str, int]:
    """Classify and load the staged records of one partition; returns its counts.

    Partitions of one entity are independent key ranges, so mapped tasks can run them on
    several workers at once; entities still load one after another.
    """
    began = time.monotonic()
    shown = progress.Syncing(job, window, part, dry_run)
    flow = job.config.flows[job.flow]
    target, books = job.target(), reconcile.open_books(job)
    target.columns(job.mapping("target"))  # reach the target first: an unreachable one fails even an empty delta
    staged = runs.staged_count(job.store, job.run_id, job.entity)
    if staging.is_dropped(job.store, job.run_id, job.entity, staged):
        raise StagingDropped(
            f"run {job.run_id} finished and dropped its {staged} staged {job.entity} records: "
            "clear the run from its extract task on, so it stages them again"
        )
    tally = Tally()
    staging.clear_results(job.store, job.run_id, job.entity, part)
    reprocess = runs.get(job.store, job.run_id)["kind"] == REPROCESS  # nothing is late, every change audited
    overdue_before = EPOCH if reprocess else window.end - flow.freshness_sla
    chunks = staging.staged_chunks(job.store, job.run_id, job.entity, flow.chunk_size, part)
    with WriteBehind("truesync-record") as behind:
        for chunk in chunks:
            sync = ChunkSync(job, target, dry_run, overdue_before, tally, audit_all=reprocess, books=books)
            _sync_chunk(sync, chunk, behind)
            shown.chunk(tally.counts + behind.counts)
    tally.counts.update(behind.counts)
    tally.load_seconds += behind.waited  # waiting for the store's part of the chunks is loading too
    counts: dict[str, Any] = dict(tally.counts)
    counts["sync_seconds"] = time.monotonic() - began
    counts["load_seconds"] = tally.load_seconds
    runs.record_counts(job.store, job.run_id, job.entity, part.name, counts)
    shown.done(counts)
    return dict(tally.counts)


def plan_partitions(job: EntityJob) -> list[Partition]:
    """Key ranges of the staged records, ``partition_size`` records each, for mapped sync tasks."""
    parts = staging.partitions(job.store, job.run_id, job.entity, job.config.flows[job.flow].partition_size)
    progress.partitioned(job, parts)
    return parts


def _sync_chunk(sync: ChunkSync, chunk: pd.DataFrame, behind: WriteBehind) -> None:
    """Quarantine the rows extraction flagged and sync the good ones; the store's part is written ``behind``."""
    job, tally = sync.job, sync.tally
    bad = chunk[chunk["check_name"].notna()]
    for row in bad.itertuples(index=False):
        sync.held.add(row.key, INVALID, row.check_name, row.field, row.reason, row.payload)
    tally.add(INVALID, len(bad))
    if not bad.empty:  # still held from an earlier run: not a new problem for the run's thresholds
        tally.add("blocked_again", len(queue.active_ids(job.store, job.flow, job.entity, list(bad["key"]))))
    good = chunk[chunk["check_name"].isna()]
    writes: list[Callable[[], object]] = []
    results = pd.concat([_invalid_results(bad), _sync_good(sync, good, writes) if not good.empty else None])
    tally.add("quarantined", len(sync.held.rows))
    behind.submit(_record_chunk, sync, results, writes)


def _record_chunk(sync: ChunkSync, results: pd.DataFrame, writes: list[Callable[[], object]]) -> Counter[str]:
    """The store's part of a synced chunk, in order: ``writes`` (ledger, last seen), the queue, the results.

    Returns the exceptions opened and resolved.
    """
    job, counts = sync.job, Counter[str]()
    for write in writes:
        write()
    if not sync.dry_run:
        counts["exceptions_opened"] = queue.quarantine(job.store, job.flow, job.entity, job.run_id, sync.held.rows)
        synced = results["key"][results["outcome"] != "quarantined"].tolist()
        counts["exceptions_resolved"] = queue.resolve_synced(job.store, job.flow, job.entity, job.run_id, synced)
    staging.record_results(job.store, job.run_id, job.entity, results, job.code_versions())
    return counts


def _invalid_results(bad: pd.DataFrame) -> pd.DataFrame:
    """Records that never reached classification: quarantined as invalid, never overdue."""
    columns = ["key", "check_name", "field", "reason", "value"]
    return bad[columns].assign(**{"class": INVALID, "outcome": "quarantined", "overdue": False})


def _sync_good(sync: ChunkSync, good: pd.DataFrame, writes: list[Callable[[], object]]) -> pd.DataFrame:
    """Match, classify, hold and write the records that passed extraction's checks; what the store must
    remember of them (ledger, last seen) is added to ``writes``.
    """
    job = sync.job
    fields = job.config.synced_fields(job.flow, job.entity)
    source = _staged_records(good)
    source_ts = pd.Series(pd.to_datetime(good["source_ts"].to_numpy()), index=source.index)
    sync.payload = pd.Series(good["payload"].to_numpy(), index=source.index)
    matched, matched_ts = _match_target(sync, list(source.index), fields)
    entries = ledger.lookup(job.store, job.flow, job.entity, list(source.index))
    known = entries.index  # the keys the ledger holds, under any mapping
    entries = entries[entries["mapping_version"] == job.mapping_version()]  # another mapping: first contact
    shared = job.config.shared_fields(job.flow, job.entity)
    echoes = _echoes(job, list(source.index)) if shared else None
    verdict = classify(source[fields], source_ts, matched, matched_ts, entries, shared, sync.overdue_before, echoes)
    stale = _older_than_synced(source_ts, entries)
    verdict.result.loc[stale, ["class", "write", "overdue"]] = (IN_SYNC, False, False)
    hold_case_twins(sync, verdict)
    held = verdict.result.index.isin(sync.held.keys)  # matched ambiguously: mismatched, and never overdue
    verdict.result.loc[held, ["class", "overdue"]] = (MISMATCHED, False)
    reconcile.hold_contradictions(sync, source, verdict, matched)
    for klass, n in verdict.result["class"].value_counts().items():
        sync.tally.add(str(klass), n)
    sync.tally.add("overdue", int(verdict.result["overdue"].sum()))
    hold_shared_ties(sync, verdict)
    pending = verdict.result.index[verdict.result["write"] & ~verdict.result.index.isin(sync.held.keys)]
    hold_orphans(sync, source.loc[pending], verdict)
    began = time.monotonic()
    written_ts = _write(sync, verdict, pending)
    classified = verdict.result.index
    done = classified[~classified.isin(sync.held.keys) & ~classified.isin(stale)].tolist()
    if not sync.dry_run:
        failpoint("sync.target_written", job.run_id)
        entries = _ledger_entries(job, verdict, source_ts, matched_ts, written_ts, done)
        writes += [
            partial(ledger.write, job.store, job.flow, job.entity, entries, known),
            partial(failpoint, "sync.ledger_written", job.run_id),
        ]
        newest = _newest_seen(job, source, source_ts)
        if newest is not None:
            writes.append(partial(last_seen.remember, job.store, job.flow, job.entity, newest, job.run_id))
    sync.tally.load_seconds += time.monotonic() - began
    return _outcomes(verdict, sync)


def _echoes(job: EntityJob, keys: list[str]) -> Echoes:
    """What every flow last wrote into this flow's source and target where the records' shared fields live."""
    spec, config = job.config.flows[job.flow], job.config
    return Echoes(
        *(
            ledger.written(job.store, config.writers_into(side, job.flow, job.entity), keys)
            for side in (spec.source, spec.target)
        )
    )


def _older_than_synced(source_ts: pd.Series, entries: pd.DataFrame) -> pd.Index:
    """Keys whose staged version changed before the version the ledger says was synced last.

    Such a version must not be written over the newer one, and the ledger keeps the newer
    one's entry: the record is counted ``in_sync`` (``docs/design.md``, "Decisions"). A file
    read again brings old versions, and so can a reprocess that meets a newer incremental run.
    """
    synced = pd.to_datetime(entries["source_ts"].reindex(source_ts.index))
    return source_ts.index[(source_ts < synced).to_numpy()]


def _staged_records(good: pd.DataFrame) -> pd.DataFrame:
    """The staged canonical records by key, as text objects: one parse for the chunk."""
    return staging.parse_payloads(good["payload"].tolist(), pd.Index(good["key"].to_numpy(), dtype=object))


def _match_target(sync: ChunkSync, keys: list[str], fields: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    """Target records for the keys, canonical, one per key; ambiguous matches are held (``holds``)."""
    job = sync.job
    mapping = job.mapping("target")
    hidden = job.config.flows[job.flow].compare.deletes_of(job.entity).mark  # a soft-deleted row is missing
    canon = to_canonical(sync.target.fetch(mapping, keys, hidden), mapping, job.spec, [job.spec.key, *fields])
    found = canon.records.assign(_ts=canon.source_ts)  # the key is canonical text already
    hold_ambiguous_matches(sync, keys, found[job.spec.key])
    found = found[found[job.spec.key].isin(set(keys))]
    unique = found.drop_duplicates(job.spec.key, keep=False).set_index(job.spec.key)
    return unique[fields], unique["_ts"]


def _write(sync: ChunkSync, verdict: Classification, pending: pd.Index) -> Any:
    """Encode for the target, upsert in batches, audit overwritten values; returns the write time."""
    job = sync.job
    keys = [k for k in pending if k not in sync.held]
    if not keys:
        return None
    mapping = job.mapping("target")
    fields = [*job.spec.key_fields, *job.config.synced_fields(job.flow, job.entity)]
    desired = verdict.desired.loc[keys].assign(**split_all(keys, job.spec.key_fields))
    rows, errors = to_system(desired[fields], mapping, sync.target.columns(mapping), fields)
    for key, err in errors.iterrows():
        sync.hold(key, verdict.result.at[key, "class"], err["check_name"], err["field"], err["reason"])
    now = utcnow()
    blocked = set(errors.index)
    rows = rows.drop(index=errors.index)
    stamped = {column: pd.Series(value, index=rows.index, dtype=object) for column, value in _stamps(job, now).items()}
    if not sync.dry_run:
        blocked |= _write_rows(sync, verdict, rows.assign(**stamped))
        written = set(keys) - blocked
        reconcile.repair_balances(sync, written)
        audit = verdict.changes(sorted(written)) if sync.audit_all else verdict.audit
        audit = audit[audit["key"].isin(written)]
        runs.add_audit(job.store, audit.assign(run_id=job.run_id, flow=job.flow, entity=job.entity, at=now))
    return now


def _stamps(job: EntityJob, now: Any) -> dict[str, Any]:
    """Columns every written row gets beside its fields: the target's change time (the write time),
    unless mapped, and a cleared soft-delete time, since a record written again is live.

    A soft delete by a status value is not cleared: the flow is expected to write that status.
    """
    mapping, stamps = job.mapping("target"), {}
    if mapping.cursor and mapping.cursor not in mapping.fields.values():
        stamps[mapping.cursor] = now
    mark = job.config.flows[job.flow].compare.deletes_of(job.entity).mark
    if mark and mark[1] is None and mark[0] not in mapping.fields.values():
        stamps[mark[0]] = None
    return stamps


def _write_rows(sync: ChunkSync, verdict: Classification, rows: pd.DataFrame) -> set[str]:
    """Write the rows (a frame of the target's columns by record key); records the target refuses one
    by one are held, so they block nothing else.

    Returns the keys held that way.
    """
    mapping = sync.job.mapping("target")
    try:
        sync.target.write(mapping, rows, WRITE_BATCH, run_id=sync.job.run_id)
    except RecordsRejected as exc:
        by_system_key = dict(zip(system_keys(records(rows), mapping), rows.index, strict=True))
        refused = {by_system_key[k]: reason for k, reason in exc.rejected.items()}
        for key, reason in refused.items():
            sync.hold(key, verdict.result.at[key, "class"], "target_rejected", None, reason)
        return set(refused)
    return set()


def _ledger_entries(
    job: EntityJob,
    verdict: Classification,
    source_ts: pd.Series,
    target_ts: pd.Series,
    written_ts: Any,
    keys: list[str],
) -> pd.DataFrame:
    """Ledger entries for every record now in sync, to be written after the target commit."""
    rows = verdict.result.loc[keys, ["source_hash", "target_hash", "write"]]
    target_at = pd.to_datetime(target_ts.reindex(keys))  # as found; the write time where written
    if written_ts is not None:
        target_at = target_at.mask(rows["write"].to_numpy(dtype=bool), pd.Timestamp(written_ts))
    return pd.DataFrame(
        {
            "key": keys,
            "source_hash": rows["source_hash"].to_numpy(),
            "target_hash": rows["target_hash"].to_numpy(),
            "source_ts": source_ts.reindex(keys).to_numpy(),
            "target_ts": target_at.to_numpy(),
            "mapping_version": job.mapping_version(),
            "run_id": job.run_id,
            "synced_at": utcnow(),
            "code_versions": job.code_versions(),
        }
    )


def _newest_seen(job: EntityJob, source: pd.DataFrame, source_ts: pd.Series) -> pd.DataFrame | None:
    """Each watched group's newest record of the chunk, for the flow's silence alert (``quality.silence``);
    None when the flow watches no group of this entity.
    """
    rule = job.config.flows[job.flow].quality.silence.get(job.entity)
    if rule is None:
        return None
    seen = pd.DataFrame({"grp": source[rule.by], "value": source[rule.field], "at": source_ts})
    newest = seen.dropna(subset=["grp", "at"]).sort_values("at", kind="stable").drop_duplicates("grp", keep="last")
    return newest.reset_index(drop=True)


def _outcomes(verdict: Classification, sync: ChunkSync) -> pd.DataFrame:
    """Each record's outcome; held records are quarantined with the check that held them, and a written
    record a check noted (``reconcile``: a balance repaired) carries that check and its reason."""
    result = verdict.result
    is_held = result.index.isin(sync.held.keys)
    klass = result["class"]
    outcome = np.select(
        [is_held, klass == IN_SYNC, klass == MISSING], ["quarantined", "unchanged", "created"], default="updated"
    )
    for name, n in pd.Series(outcome[~is_held]).value_counts().items():
        sync.tally.add(str(name), n)
    noted = [{"key": k, "check_name": check, "reason": reason} for k, (check, reason) in sync.noted.items()]
    reasons = pd.DataFrame([*sync.held.rows, *noted], columns=["key", "check_name", "field", "reason"])
    reasons = reasons.drop_duplicates("key").set_index("key").reindex(result.index)  # held: the hold's reason
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
    return frame
