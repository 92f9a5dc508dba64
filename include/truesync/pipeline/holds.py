"""Holds: classified records that must wait in the exception queue instead of being written.

Three rules, each a check name in the queue (see ``docs/design.md``, "Classification"):

* ``unique_match``: a key matching several target records, or one the target matches only
  through a case- or accent-insensitive collation (MariaDB's default): writing it would
  update the other record. Also new keys of one chunk that differ only in case, for a target
  whose key column does not tell case apart: written, they would be one record. The record
  is ``mismatched``.
* ``shared_field_tie``: a shared field changed on both sides at the same instant; nobody
  can say which value is newer.
* ``parent_exists``: a child whose parent is missing in the target, or waits in the queue,
  waits too; it is retried on every later run and loads once the parent is there.
"""

from __future__ import annotations

import pandas as pd

from truesync.core.canonical import raw_keys
from truesync.core.classify import MISMATCHED, MISSING, Classification
from truesync.pipeline.job import ChunkSync
from truesync.quality.checks import BLOCK, found_in_target, run_checks, with_found
from truesync.store import queue, staging

UNIQUE_MATCH, SHARED_FIELD_TIE, PARENT_EXISTS = "unique_match", "shared_field_tie", "parent_exists"


def hold_ambiguous_matches(sync: ChunkSync, keys: list[str], found: pd.Series) -> None:
    """Hold keys the target matches more than once, or only by collation; ``found`` holds the keys it returned."""
    key_field, target = sync.job.spec.key, sync.target.name
    asked = found.isin(keys)
    strangers = {k.casefold(): k for k in found[~asked]}  # what only a collation made match: usually nothing
    for key in keys if strangers else []:
        if key.casefold() in strangers:
            reason = f"key '{key}' matches '{strangers[key.casefold()]}' in target '{target}' only by collation"
            sync.hold(key, MISMATCHED, UNIQUE_MATCH, key_field, reason)
    counts = found[asked].value_counts()
    for key, n in counts[counts > 1].items():
        sync.hold(key, MISMATCHED, UNIQUE_MATCH, key_field, f"key '{key}' matches {n} records in target '{target}'")


def hold_case_twins(sync: ChunkSync, verdict: Classification) -> None:
    """Hold every new record whose key differs from another new one's only in case, where the target's key
    column does not tell case apart (``Target.folds_case``): neither is written, so neither overwrites the other.

    A new key that differs in case from a key the target holds is held when it is looked up (above).
    """
    result = verdict.result
    created = result.index[(result["class"] == MISSING) & result["write"] & ~result.index.isin(sync.held.keys)]
    folded = pd.Series(created, index=created).map(str.casefold)
    twins = folded[folded.duplicated(keep=False)]
    if twins.empty or not sync.target.folds_case(sync.job.mapping("target")):
        return
    key_field, target = sync.job.spec.key, sync.target.name
    for key, fold in twins.items():
        others = ", ".join(f"'{k}'" for k in twins.index[(twins == fold) & (twins.index != key)])
        reason = f"key '{key}' and {others} differ only in case, which target '{target}' does not tell apart"
        sync.hold(key, MISMATCHED, UNIQUE_MATCH, key_field, reason)


def hold_shared_ties(sync: ChunkSync, verdict: Classification) -> None:
    """Hold records whose shared field changed on both sides at the same time."""
    conflicts = verdict.result[verdict.result["conflict"].notna()]
    for key, row in conflicts.iterrows():
        reason = f"shared field '{row['conflict']}' changed on both sides at the same time"
        sync.hold(key, row["class"], SHARED_FIELD_TIE, row["conflict"], reason)


def hold_orphans(sync: ChunkSync, pending: pd.DataFrame, verdict: Classification) -> None:
    """A child whose parent is missing in the target, or waits in the queue, waits too.

    Parents this run already handled count as they ended: created or in sync means present
    (even in a dry run, which wrote nothing), quarantined means waiting. GX finds the children
    whose parent is not among the ready ones; the reason then says which of the three it is.
    """
    job = sync.job
    for ref_field, parent in job.spec.references.items():
        values = pending[ref_field].dropna().astype(str) if ref_field in pending else pd.Series(dtype=object)
        if values.empty:
            continue
        wanted = sorted(set(values))
        parent_mapping = job.config.entity_mapping(job.config.flows[job.flow].target, parent)
        this_run = staging.outcomes(job.store, job.run_id, parent, wanted)
        waiting = queue.active_ids(job.store, job.flow, parent, wanted)
        held_now = {v for v, outcome in this_run.items() if outcome == "quarantined"}
        found = set(raw_keys(sync.target.fetch(parent_mapping, wanted), parent_mapping))
        ready = (set(this_run) - held_now) | (found - set(waiting) - held_now)
        children = pd.DataFrame({"key": values.index, ref_field: values.to_numpy()})
        rule = f"must name a {parent} in the target or synced by this run"
        check = found_in_target(ref_field, BLOCK, rule)
        for row in run_checks([check], with_found(ref_field, children, ready), "key").failures.index:
            key, value = children.at[row, "key"], children.at[row, ref_field]
            if value in waiting:
                reason = f"waits for {parent} '{value}' in the exception queue (#{waiting[value]})"
            elif value in held_now:
                reason = f"waits for {parent} '{value}', held for the exception queue by this run"
            else:
                reason = f"{parent} '{value}' (field '{ref_field}') does not exist in target '{sync.target.name}'"
            sync.hold(key, verdict.result.at[key, "class"], PARENT_EXISTS, ref_field, reason)
