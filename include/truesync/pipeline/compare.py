"""Full compare: every record of source, target and ledger, not only a window's (``docs/design.md``, "Full compare").

Named steps, in this order:

1. ``begin_compare``: a run of kind ``compare``, its window everything up to now.
2. ``compare_entity``, per entity in dependency order: both sides are scanned whole, in
   chunks, hashed on the synced fields and written to the store; or, where both databases give
   digests and the ledger knows the entity, scanned as digests. The store joins both sides with
   the ledger once (``store.compare.doubt``) and keeps only the keys it cannot confirm in sync;
   read by digest, those are read again and hashed (``docs/design.md``, "Digests"). The store
   refreshes the ledger of the doubted records in sync itself, and ``core.compare.judge``
   decides per key that differs. Source records that differ or are
   missing in the target are fetched again by key and staged as an extract stages them.
3. The staged records are classified and written by the incremental path
   (``load.plan_partitions``, ``load.sync_entity``): same classes, holds, audit and ledger.
4. ``apply_deletes``: records only the target holds, children before parents, under the
   flow's delete policy and its share guard.
5. ``finish_compare``: quiet flags, the report (JSON, HTML, index); the watermark stays.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pandas as pd

from truesync.config import Config, EntityMapping
from truesync.connectors.base import DIGEST_COLUMN, CopiesDigests, ScansDigests, ScansKeysOnce, SoftMark, Source, Target
from truesync.connectors.registry import open_source, open_target
from truesync.core.canonical import EPOCH, Canonical, as_text, keys_of, raw_keys, to_canonical
from truesync.core.classify import side_hash
from truesync.core.compare import DELETE, DELETED, FORGET, REPORT, SYNC, TARGET_ONLY, judge
from truesync.core.text import stand_in_key, unstorable_keys
from truesync.pipeline import progress
from truesync.pipeline.extract import prepare, stage_fetched
from truesync.pipeline.finalize import fail_run, finish_run
from truesync.pipeline.job import EntityJob, begin_run
from truesync.pipeline.load import plan_partitions, sync_entity
from truesync.pipeline.window import Window
from truesync.store import Store, checks, code_tables, ledger, queue, runs, staging
from truesync.store import compare as compared
from truesync.store.compare import SOURCE, TARGET
from truesync.store.core import utcnow
from truesync.store.rate_limits import shared_ceilings
from truesync.support.collector import setup_frozen
from truesync.support.overlap import WriteBehind, read_ahead

CHILDREN_REMAIN = "children_remain"
Fetch = Callable[[list[str]], pd.DataFrame]  # a side's current rows of some keys
Rows = Callable[[pd.Series], pd.DataFrame]  # the rows of some of a chunk's keys (indexed as the chunk)
Reader = Callable[[pd.DataFrame], pd.DataFrame]  # a scanned chunk to its keys, hashes and change times


class DeleteGuardError(RuntimeError):
    """A compare would delete more than ``compare.max_delete_share`` of an entity, or everything: nothing is deleted."""


def begin_compare(store: Store, flow: str, run_id: str, dry_run: bool) -> Window:
    """Register a compare run; its window is everything up to now (overdue is judged against now)."""
    window = Window(EPOCH, utcnow())
    begin_run(store, flow, run_id, window, dry_run, kind="compare")
    return window


def run_compare(
    config: Config, store: Store, flow: str, run_id: str, dry_run: bool = False, entities: list[str] | None = None
) -> dict[str, Any]:
    """Every step of the module docstring in one process (the CLI, tests, the benchmark)."""
    window = begin_compare(store, flow, run_id, dry_run)
    for entity in config.load_order(entities or config.flows[flow].entities):
        job = EntityJob(config, store, flow, entity, run_id)
        compare_entity(job)
        for part in plan_partitions(job):
            sync_entity(job, window, dry_run, part)
    try:
        apply_deletes(config, store, flow, run_id, dry_run)
    except DeleteGuardError as exc:  # in Airflow, the DAG's record_failure task does this
        fail_run(store, run_id, str(exc))
        raise
    return finish_compare(config, store, flow, run_id)


@setup_frozen
def compare_entity(job: EntityJob) -> int:
    """Scan both sides, judge every key, stage the source records to repair; returns keys compared."""
    began = time.monotonic()
    spec = job.config.flows[job.flow]
    source, target = job.source(), job.target()
    source_mapping, target_mapping = job.mapping("source"), job.mapping("target")
    target.require_unique_key(target_mapping)
    compared.clear(job.store, job.run_id, job.entity)
    staging.clear(job.store, job.run_id, job.entity)
    checks.clear(job.store, job.run_id, job.entity, "extract")
    code_tables.register(job.store, job.code_tables(), job.run_id, str(job.config.directory))
    hidden = spec.compare.deletes_of(job.entity).mark
    sides = ((source, source_mapping), (target, target_mapping))
    once = all(isinstance(s, ScansKeysOnce) and s.scans_each_key_once(m) for s, m in sides)
    scan = _scan_digests if _by_digest(job, source, target) else _scan_rows
    scanned = scan(job, source, target, hidden, once)
    kept = _judge(job, runs.get(job.store, job.run_id)["dry_run"])
    repairs = compared.diff_keys(job.store, job.run_id, job.entity, SYNC, spec.chunk_size)
    staged = stage_fetched(job, source, repairs)  # a record deleted at the source since its scan waits for the next
    seconds = time.monotonic() - began
    counts = {"extracted": kept + staged, "in_sync": kept, "unchanged": kept, "extract_seconds": seconds}
    runs.record_counts(job.store, job.run_id, job.entity, "compare", counts)
    progress.compared(job, scanned, kept, staged, counts["extract_seconds"])
    return kept + staged


def _by_digest(job: EntityJob, source: Source, target: Target) -> bool:
    """Whether both sides can give digests of the synced fields (``docs/design.md``, "Digests"): both
    databases hash, both mappings read every synced field as stored, and the ledger holds entries
    made under the current mapping version to confirm the records that did not change.
    """
    fields = job.config.synced_fields(job.flow, job.entity)
    systems = ((source, job.mapping("source")), (target, job.mapping("target")))
    return all(
        isinstance(system, ScansDigests) and system.gives_digests() and mapping.as_stored(fields)
        for system, mapping in systems
    ) and ledger.holds_entries(job.store, job.flow, job.entity, job.mapping_version())


def _scan_rows(job: EntityJob, source: Source, target: Target, hidden: SoftMark, once: bool) -> dict[str, int]:
    """Scan both sides whole, every row mapped and hashed (``_hasher``); returns rows read per side."""
    size, mappings = job.config.flows[job.flow].chunk_size, _mappings(job)
    frames = {SOURCE: source.scan(mappings[SOURCE], size), TARGET: target.scan(mappings[TARGET], size, hidden)}
    scanned = {side: _scan(job, frames[side], _hasher(job, mappings[side], side), side) for side in frames}
    _settle(job, once)
    return scanned


def _scan_digests(job: EntityJob, source: Source, target: Target, hidden: SoftMark, once: bool) -> dict[str, int]:
    """Scan both sides as digests (``_digests``); then read and hash, by key, every doubted record both hold
    (``store.compare.unconfirmed``), so only records the ledger confirms stay as digests; returns rows
    read per side.

    Both sides are read at once where one of them is copied: a copy holds no rows in Python, so it
    costs little memory and interpreter time beside the other side, while the databases work.
    """
    size, mappings = job.config.flows[job.flow].chunk_size, _mappings(job)
    systems, hiding = {SOURCE: source, TARGET: target}, {SOURCE: None, TARGET: hidden}
    fetch: dict[str, Fetch] = {
        SOURCE: lambda keys: source.fetch(mappings[SOURCE], keys),
        TARGET: lambda keys: target.fetch(mappings[TARGET], keys, hidden),
    }
    copied = {side: _copies(job, system, mappings[side]) for side, system in systems.items()}
    plain = _plain_fields(job, systems, mappings)
    with ThreadPoolExecutor(max_workers=2 if any(copied.values()) else 1, thread_name_prefix="truesync-side") as pool:
        running = {
            side: pool.submit(
                _digests, job, system, mappings[side], side, hiding[side], fetch[side], copied[side], plain
            )
            for side, system in systems.items()
        }
        scanned = {side: done.result() for side, done in running.items()}
    _settle(job, once)
    hashers = {side: _hasher(job, mapping, side) for side, mapping in mappings.items()}
    with WriteBehind("truesync-compare-keys") as behind:
        for keys in compared.unconfirmed(job.store, job.run_id, job.entity, size):
            for side, hashed in hashers.items():
                behind.submit(compared.reread, job.store, job.run_id, job.entity, side, hashed(fetch[side](keys)))
    return scanned


def _settle(job: EntityJob, once: bool) -> None:
    """Both sides scanned: keep each key's last reading where a side may repeat one (``once`` promises
    not), then doubt every key the ledger cannot confirm (``store.compare.doubt``)."""
    compared.settle(job.store, job.run_id, job.entity, repeats=not once)
    compared.doubt(job.store, job.flow, job.run_id, job.entity, job.mapping_version())


def _digests(
    job: EntityJob,
    system: Source | Target,
    mapping: EntityMapping,
    side: str,
    hidden: SoftMark,
    fetch: Fetch,
    copied: bool,
    plain: set[str],
) -> int:
    """One side's digests into the store: ``copied`` from its database into the store's (``_copies``), else
    scanned in chunks and keyed here (``_digester``); the ``plain`` fields spelled without their length
    (``_plain_fields``); returns rows read."""
    columns = [mapping.fields[f] for f in job.config.synced_fields(job.flow, job.entity)]
    spelled = {mapping.fields[f] for f in plain}
    if copied:
        lines = cast(CopiesDigests, system).copy_digests(
            mapping, columns, hidden, compared.DIGEST_PREFIX, plain=spelled
        )
        return compared.copy_keys(job.store, job.run_id, job.entity, side, lines)
    size = job.config.flows[job.flow].chunk_size
    frames = cast(ScansDigests, system).scan_digests(mapping, columns, size, hidden, plain=spelled)
    return _scan(job, frames, _digester(job, mapping, side, fetch), side)


def _plain_fields(job: EntityJob, systems: dict[str, Source | Target], mappings: dict[str, EntityMapping]) -> set[str]:
    """The synced fields both sides hold in a number, date or time column (``ScansDigests.plain_columns``):
    both spell them in their digests without their length, so both spell every field alike."""
    plain = set(job.config.synced_fields(job.flow, job.entity))
    for side, system in systems.items():
        mapping = mappings[side]
        columns = cast(ScansDigests, system).plain_columns(mapping, [mapping.fields[f] for f in plain])
        plain = {f for f in plain if mapping.fields[f] in columns}
    return plain


def _copies(job: EntityJob, system: Source | Target, mapping: EntityMapping) -> bool:
    """Whether a side's digests can go from its database to the store's with no row through Python: both
    are PostgreSQL (``CopiesDigests``, ``store.compare.copies_keys``), and the key column's text is the
    canonical key (a whole number, read as a whole number or a string, no code translating it)."""
    key = job.spec.key
    return (
        compared.copies_keys(job.store)
        and isinstance(system, CopiesDigests)
        and system.copies_digests(mapping)
        and job.spec.fields[key].type in ("integer", "string")
        and mapping.as_stored([key])
    )


def _mappings(job: EntityJob) -> dict[str, EntityMapping]:
    return {SOURCE: job.mapping("source"), TARGET: job.mapping("target")}


def _scan(job: EntityJob, frames: Iterator[pd.DataFrame], read: Reader, side: str) -> int:
    """Write one side's keys, hashes and change times, as ``read`` makes them of each chunk, to the
    store; returns rows read.

    The next chunk is read while this one is mapped and hashed, and each is written behind the next
    (``support.overlap``) with its number, so a key read twice keeps its last reading.
    """
    rows = 0
    with WriteBehind("truesync-compare-keys") as behind:
        for seq, raw in enumerate(read_ahead(frames, "truesync-scan")):
            rows += len(raw)
            behind.submit(compared.record_keys, job.store, job.run_id, job.entity, side, seq, read(raw))
    return rows


def _hasher(job: EntityJob, mapping: EntityMapping, side: str) -> Reader:
    """Rows to their keys, the hash of their synced fields (``classify.side_hash``) and change times."""
    fields = job.config.synced_fields(job.flow, job.entity)
    shared = job.config.shared_fields(job.flow, job.entity)

    def read(raw: pd.DataFrame) -> pd.DataFrame:
        canon = to_canonical(raw, mapping, job.spec, [job.spec.key, *fields])
        hashes = side_hash(canon.records[fields], shared)
        return _keyed(job, raw, canon, mapping, side, hashes, lambda keys: raw.loc[keys.index])

    return read


def _digester(job: EntityJob, mapping: EntityMapping, side: str, fetch: Fetch) -> Reader:
    """Digest rows (``ScansDigests``) to their keys, digests (``DIGEST_PREFIX``) and change times;
    ``fetch`` reads the whole rows of keys (a source's unstorable ones, to stage)."""

    def read(raw: pd.DataFrame) -> pd.DataFrame:
        canon = to_canonical(raw, mapping, job.spec, [job.spec.key])
        digests = compared.DIGEST_PREFIX + raw[DIGEST_COLUMN]
        return _keyed(job, raw, canon, mapping, side, digests, lambda keys: fetch(keys.tolist()))

    return read


def _keyed(
    job: EntityJob,
    raw: pd.DataFrame,
    canon: Canonical,
    mapping: EntityMapping,
    side: str,
    hashes: pd.Series,
    rows: Rows,
) -> pd.DataFrame:
    """One chunk's ``key``, ``hash`` and ``ts``, each key once.

    A row the mapping cannot read, or a key read twice in one chunk, gets no hash, so it is always
    compared again (and its problem reported by the checks that stage it). A key the store cannot
    hold (``core.text``) is compared under its stand-in name on the target side (so it shows as
    ``target_only``); a source row with one is staged for the checks at once, which hold it as
    extract does, since it could not be fetched again by that name; ``rows`` gives its whole row.
    """
    keys = _storable_keys(job, keys_of(raw, canon, mapping, job.spec.key), side, rows)
    frame = pd.DataFrame({"key": keys, "hash": hashes, "ts": canon.source_ts})
    unsure = frame.index.isin(canon.errors.index) | frame["key"].duplicated(keep=False).to_numpy()
    frame.loc[unsure, "hash"] = None
    return frame.dropna(subset=["key"]).drop_duplicates("key", keep="last")


def _storable_keys(job: EntityJob, keys: pd.Series, side: str, rows: Rows) -> pd.Series:
    """``keys`` with each unstorable one named by its stand-in (target side) or left out and its ``rows``
    staged (source side)."""
    unstorable = unstorable_keys(keys).index
    if not len(unstorable):
        return keys
    keys = keys.copy()
    if side == compared.SOURCE:
        staging.stage(job.store, job.run_id, job.entity, prepare(job, rows(keys[unstorable])))
        keys[unstorable] = None
    else:
        keys[unstorable] = keys[unstorable].map(stand_in_key)
    return keys


def _judge(job: EntityJob, dry_run: bool) -> int:
    """Refresh the stale ledger entries of the records in sync, in the store; decide per key that
    differs (``core.compare.judge``) and store the decisions; returns how many records are in sync:
    the source's keys that are not among the differences.

    A difference whose key the exception queue holds already is ``known``: a problem reported
    before, so never quiet drift again.
    """
    spec, version = job.config.flows[job.flow], job.mapping_version()
    watermark = runs.watermark(job.store, job.flow)
    if not dry_run:
        entry = {
            "mapping_version": version,
            "run_id": job.run_id,
            "synced_at": utcnow(),
            "code_versions": job.code_versions(),
        }
        compared.refresh_ledger(job.store, job.flow, job.run_id, job.entity, entry)
    differing = 0
    for page in compared.differences(job.store, job.run_id, job.entity, spec.chunk_size):
        differing += int(page["s_seen"].notna().sum())
        verdict = judge(page, version, watermark)
        diffs = verdict[["action", "quiet_source", "quiet_target"]].rename_axis("key").reset_index()
        queued = queue.active_ids(job.store, job.flow, job.entity, diffs["key"].tolist())
        diffs["known"] = diffs["key"].isin(queued.keys())
        compared.record_diffs(job.store, job.run_id, job.entity, diffs)
    return compared.side_count(job.store, job.run_id, job.entity, compared.SOURCE) - differing


def apply_deletes(config: Config, store: Store, flow: str, run_id: str, dry_run: bool) -> dict[str, int]:
    """Records only the target holds, every compared entity, children first; returns counts over all.

    The share guard of every entity is checked before anything is deleted, so a guard that
    trips leaves every target as it was.
    """
    spec = config.flows[flow]
    compared_entities = runs.entity_counts(store, run_id)
    entities = [e for e in config.load_order(spec.entities) if e in compared_entities]
    jobs = [EntityJob(config, store, flow, entity, run_id) for entity in entities]
    for job in jobs:
        _guard(job)
    ceilings = shared_ceilings(store)
    source, target = open_source(config, spec.source, ceilings), open_target(config, spec.target, ceilings)
    removed: dict[str, set[str]] = {}
    totals: dict[str, int] = {}
    for job in reversed(jobs):
        counts = _DeleteStep(job, source, target, dry_run, removed).run()
        runs.record_counts(store, run_id, job.entity, "deletes", counts)
        for name, n in counts.items():
            totals[name] = totals.get(name, 0) + n
    return totals


def _guard(job: EntityJob) -> None:
    """Refuse a compare that would delete more than the flow allows, or everything of an entity."""
    spec = job.config.flows[job.flow]
    if spec.compare.deletes_of(job.entity).policy == "report":
        return
    planned = compared.action_count(job.store, job.run_id, job.entity, DELETE)
    rows = compared.side_count(job.store, job.run_id, job.entity, compared.TARGET)
    where = f"flow '{job.flow}', entity '{job.entity}'"
    if planned and compared.side_count(job.store, job.run_id, job.entity, compared.SOURCE) == 0:
        raise DeleteGuardError(
            f"{where}: source '{spec.source}' returned no rows, so all {planned} of {rows} rows in target "
            f"'{spec.target}' would be deleted; nothing was deleted (an empty or unreachable table must not "
            "empty the target)"
        )
    limit = spec.compare.max_delete_share
    if planned and planned / rows > limit:
        raise DeleteGuardError(
            f"{where}: {planned} deletes are {planned / rows:.2%} of the {rows} rows in target '{spec.target}', "
            f"above compare.max_delete_share = {limit:.2%}; nothing was deleted"
        )


class _DeleteStep:
    """One entity's records deleted at the source (its policy), only in the target (reported), or gone (forgotten)."""

    def __init__(self, job: EntityJob, source: Source, target: Target, dry_run: bool, removed: dict[str, set[str]]):
        self.job, self.source, self.target, self.dry_run, self.removed = job, source, target, dry_run, removed
        self.spec = job.config.flows[job.flow]
        self.policy = self.spec.compare.deletes_of(job.entity)
        self.counts: dict[str, int] = {}

    def run(self) -> dict[str, int]:
        store, run_id, entity, size = self.job.store, self.job.run_id, self.job.entity, self.spec.chunk_size
        self.removed[entity] = set()
        for keys in compared.diff_keys(store, run_id, entity, DELETE, size):
            self._deleted(keys)
        for keys in compared.diff_keys(store, run_id, entity, REPORT, size):
            self._result(keys, TARGET_ONLY, "reported")
        for keys in compared.diff_keys(store, run_id, entity, FORGET, size):
            if not self.dry_run:
                ledger.forget(store, self.job.flow, entity, keys)
        return self.counts

    def _add(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def _result(self, keys: list[str], klass: str, outcome: str, reasons: dict[str, str] | None = None) -> None:
        """Record the class and outcome of ``keys``; ``reasons`` holds them in the queue (``children_remain``)."""
        check, why = (CHILDREN_REMAIN, [(reasons or {}).get(k) for k in keys]) if reasons else (None, None)
        rows = pd.DataFrame({"key": keys, "class": klass, "outcome": outcome, "overdue": False, "check_name": check,
                             "field": None, "reason": why, "value": None})  # fmt: skip
        staging.record_results(self.job.store, self.job.run_id, self.job.entity, rows, self.job.code_versions())
        for name in ("extracted", klass, outcome):
            self._add(name, len(keys))

    def _deleted(self, keys: list[str]) -> None:
        """Keys the target and the ledger hold and the source no longer does: the flow's policy.

        The source is asked again first: a record back since the scan is only reported.
        """
        if self.policy.policy == "report":
            self._result(keys, DELETED, "reported")
            return
        mapping = self.job.mapping("source")
        back = set(raw_keys(self.source.fetch(mapping.narrowed([]), keys), mapping))
        self._result([k for k in keys if k in back], DELETED, "reported")
        gone = [k for k in keys if k not in back]
        holding = self._children(gone)
        self._hold(holding)
        remove = [k for k in gone if k not in holding]
        if remove and not self.dry_run:
            self._remove(remove)
        self.removed[self.job.entity].update(remove)
        self._result(remove, DELETED, "removed" if self.policy.policy == "delete" else "soft_deleted")

    def _remove(self, keys: list[str]) -> None:
        job, mapping = self.job, self.job.mapping("target")
        if self.policy.policy == "delete":
            self.target.delete(mapping, keys)
        else:
            column = str(self.policy.column)
            self.target.mark_deleted(mapping, keys, column, self.policy.value or utcnow())
        ledger.forget(job.store, job.flow, job.entity, keys)
        self._add("exceptions_resolved", queue.resolve_synced(job.store, job.flow, job.entity, job.run_id, keys))

    def _children(self, keys: list[str]) -> dict[str, str]:
        """Parents among ``keys`` that children in the target still reference (not removed by this compare)."""
        config, target_name = self.job.config, self.spec.target
        holding: dict[str, list[str]] = {}
        for child in self.spec.entities:
            for field, parent in config.entities[child].references.items():
                if parent != self.job.entity:
                    continue
                mapping = config.entity_mapping(target_name, child)
                found = self.target.fetch_by(mapping.narrowed([]), mapping.fields[field], keys)
                column = mapping.fields[field]
                refs = pd.DataFrame({"child": raw_keys(found, mapping), "parent": as_text(found[column])})
                refs = refs[~refs["child"].isin(self.removed.get(child, set()))]
                for parent_key, n in refs.groupby("parent").size().items():
                    holding.setdefault(str(parent_key), []).append(f"{n} {child}")
        entity = self.job.entity
        return {
            key: f"{entity} '{key}' was deleted at the source, but {' and '.join(kids)} record(s) in '{target_name}' "
            f"still reference it; it is deleted once they are gone"
            for key, kids in holding.items()
        }

    def _hold(self, reasons: dict[str, str]) -> None:
        """Parents whose children remain wait in the exception queue; a later compare deletes them."""
        if not reasons:
            return
        self._result(list(reasons), DELETED, "quarantined", reasons)
        if self.dry_run:
            return
        key = self.job.spec.key
        rows = [{"key": k, "class": DELETED, "check_name": CHILDREN_REMAIN, "field": None, "reason": r,
                 "payload": json.dumps({key: k})} for k, r in reasons.items()]  # fmt: skip
        job = self.job
        self._add("exceptions_opened", queue.quarantine(job.store, job.flow, job.entity, job.run_id, rows))


def finish_compare(config: Config, store: Store, flow: str, run_id: str) -> dict[str, Any]:
    """Quiet flags on the results, then the report as any run's (``finalize.finish_run``); the scanned keys go."""
    compared.mark_quiet(store, run_id)
    for entity, n in compared.quiet_counts(store, run_id).items():
        runs.record_counts(store, run_id, entity, "quiet", {"quiet": n})
    try:
        return finish_run(config, store, flow, run_id)
    finally:
        compared.purge(store, run_id)
