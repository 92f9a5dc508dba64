"""Extract: a flow's source delta for one entity into the store's staging table.

Each chunk is mapped to canonical form right away, so a bad record is recognised once,
at the door, with the field and the reason; deduplication by key happens here too.
Open exceptions are fetched again by key on every run, so they are retried and resolve
themselves once their cause is gone. A source that reads files is handed the flow's file
ledger first, so it reads only files that are new or changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pandas as pd

from truesync.connectors.base import ORIGIN, PROBLEM, KeepsFiles, Source
from truesync.core.canonical import Canonical, keys_of, to_canonical
from truesync.core.classify import row_hash
from truesync.core.text import BAD_KEY_PREFIX, escaped_column, shown_key, stand_in_key, unstorable_keys
from truesync.pipeline import progress
from truesync.pipeline.job import EntityJob
from truesync.pipeline.window import Window
from truesync.quality.checks import Suite, suite_for, validation_frame
from truesync.store import checks, code_tables, files, queue, runs, staging
from truesync.support.collector import setup_frozen
from truesync.support.failpoints import failpoint
from truesync.support.frames import records
from truesync.support.overlap import WriteBehind, read_ahead


def suite(job: EntityJob) -> Suite:
    """The entity's data-quality checks on this flow's source."""
    name = f"{job.flow}.{job.entity}"
    return suite_for(name, job.spec, job.mapping("source"), job.payload_fields(), job.config)


@setup_frozen
def extract_entity(job: EntityJob, window: Window) -> int:
    """Stage the window's records, the rows without a key and the retries of open exceptions.

    Returns how many distinct records were staged.
    """
    began = time.monotonic()
    shown = progress.Extracting(job, window)
    flow = job.config.flows[job.flow]
    code_tables.register(job.store, job.code_tables(), job.run_id, str(job.config.directory))
    source = job.source()
    if isinstance(source, KeepsFiles):
        source.remember(files.Ledger(job.store, job.flow, job.entity, job.run_id))
    mapping = job.mapping("source")
    staging.clear(job.store, job.run_id, job.entity)
    checks.clear(job.store, job.run_id, job.entity, "extract")
    batch = batch_rows(job)
    with WriteBehind("truesync-stage") as behind:
        window_rows = read_ahead(source.extract(mapping, window.start, window.end, flow.chunk_size), "truesync-read")
        for raw in batched(window_rows, batch):
            behind.submit(_stage, job, prepare(job, raw))
            shown.read("window", len(raw))
        for raw in batched(source.unwindowed_rows(mapping, flow.chunk_size), batch):
            behind.submit(_stage, job, prepare(job, raw))
            shown.read("no key or change time", len(raw))
        for keys in queue.active_keys(job.store, job.flow, job.entity, flow.chunk_size):
            real = [k for k in keys if not k.startswith((NULL_KEY_PREFIX, BAD_KEY_PREFIX))]
            if real:
                behind.submit(_stage, job, prepare(job, source.fetch(mapping, real)))
                shown.read("exception retries", len(real))
    extracted = staging.count(job.store, job.run_id, job.entity)
    counts = {"extracted": extracted, "extract_seconds": time.monotonic() - began}
    runs.record_counts(job.store, job.run_id, job.entity, "extract", counts)
    shown.done(extracted, counts["extract_seconds"])
    return extracted


def _stage(job: EntityJob, rows: pd.DataFrame) -> None:
    """Stage prepared rows; runs behind the next chunk's read and checks (``support.overlap``)."""
    staging.stage(job.store, job.run_id, job.entity, rows)
    failpoint("extract.staged", job.run_id)


NULL_KEY_PREFIX = "null-key:"


@setup_frozen
def stage_fetched(job: EntityJob, source: Source, keys: Iterator[list[str]]) -> int:
    """Fetch records by key, page after page of ``keys``, and stage them as the window's are (the next page
    read ahead, each batch staged behind the next); returns how many distinct records are staged. A key
    the source no longer holds is not staged.
    """
    fetched = read_ahead((source.fetch(job.mapping("source"), page) for page in keys), "truesync-read")
    with WriteBehind("truesync-stage") as behind:
        for raw in batched(fetched, batch_rows(job)):
            behind.submit(staging.stage, job.store, job.run_id, job.entity, prepare(job, raw))
    return staging.count(job.store, job.run_id, job.entity)


def batch_rows(job: EntityJob) -> int:
    """Rows checked at once. An entity with user expectations joins chunks into batches of
    ``quality.batch_rows``: GX's validation of them has a fixed cost per call (~0.1 s), so
    checking 50,000 rows at once costs a third of checking them 5,000 at a time. Without them
    each chunk is its own batch, and memory is bounded by ``chunk_size``.
    """
    flow = job.config.flows[job.flow]
    return max(flow.chunk_size, flow.quality.batch_rows) if suite(job).user else flow.chunk_size


def batched(chunks: Iterator[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    """Consecutive chunks joined into batches of about ``rows``."""
    pending: list[pd.DataFrame] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= rows:
            yield pd.concat(pending, ignore_index=True)
            pending, size = [], 0
    if pending:
        yield pd.concat(pending, ignore_index=True)


def prepare(job: EntityJob, raw: pd.DataFrame) -> pd.DataFrame:
    """Canonical rows for staging: failed checks flagged, null and unstorable keys named, duplicates settled.

    A key the store cannot hold is flagged first (``storable_key``); then the data-quality suite
    speaks; a mapping error (a value the checks let through but the mapping cannot read) is
    reported only for rows the suite passed. Reasons and flagged values are escaped where a
    store could not hold their text.
    """
    if raw.empty:
        return pd.DataFrame()
    mapping = job.mapping("source")
    verdict = suite(job).validate(validation_frame(raw, mapping, job.spec))
    checks.record(job.store, job.run_id, job.entity, "extract", verdict.stats)
    canon = to_canonical(raw, mapping, job.spec, job.payload_fields())
    keys = keys_of(raw, canon, mapping, job.spec.key)  # a bad key is retried by its own text
    null = raw[mapping.key_columns].isna().any(axis=1)
    if null.any():
        keys[null] = NULL_KEY_PREFIX + row_hash(raw[null].astype(str))
    unstorable = _unstorable(keys, mapping.key)
    keys[unstorable.index] = keys[unstorable.index].map(stand_in_key)
    frame = pd.DataFrame({"key": keys, "source_ts": canon.source_ts})
    flagged = unstorable.combine_first(_unreadable(raw)).combine_first(verdict.failures).combine_first(canon.errors)
    frame = frame.join(flagged)
    untimed = frame["source_ts"].isna() & frame["check_name"].isna()
    if untimed.any():
        frame.loc[untimed, ["check_name", "field"]] = ["valid_datetime", mapping.cursor]
        frame.loc[untimed, "reason"] = f"change time (column '{mapping.cursor}') cannot be read as a time"
    _say_where(frame, raw)
    frame["reason"], frame["value"] = escaped_column(frame["reason"]), escaped_column(frame["value"])
    frame["payload"] = _payloads(raw, canon)
    return _settle_duplicates(frame)


def _unstorable(keys: pd.Series, field: str) -> pd.DataFrame:
    """Rows whose key the store cannot hold (``core.text``): they fail check ``storable_key``."""
    why = unstorable_keys(keys)
    shown = keys[why.index].map(shown_key)
    reasons = "key " + shown + " cannot name a record: " + why
    flagged = {"check_name": "storable_key", "field": field, "reason": reasons, "value": shown}
    return pd.DataFrame(flagged, index=why.index, columns=list(flagged))


def _unreadable(raw: pd.DataFrame) -> pd.DataFrame:
    """Rows the source could not read at all (its ``PROBLEM`` column): they fail check ``readable_row``."""
    columns = ["check_name", "field", "reason", "value"]
    if PROBLEM not in raw:
        return pd.DataFrame(columns=columns, dtype=object)
    reasons = raw[PROBLEM].dropna()
    unread = {"check_name": "readable_row", "field": None, "reason": reasons, "value": None}
    return pd.DataFrame(unread, columns=columns)


def _say_where(frame: pd.DataFrame, raw: pd.DataFrame) -> None:
    """A flagged row's reason ends with where the source read it (file and line), when the source says."""
    if ORIGIN not in raw:
        return
    flagged = frame["check_name"].notna() & frame["check_name"].ne("readable_row") & raw[ORIGIN].notna()
    if flagged.any():
        frame.loc[flagged, "reason"] = frame.loc[flagged, "reason"] + " (" + raw.loc[flagged, ORIGIN] + ")"


def _payloads(raw: pd.DataFrame, canon: Canonical) -> list[str]:
    """Canonical JSON for good rows; the original column values for rows with an error."""
    payloads = staging.payloads(records(canon.records))
    bad = canon.errors.index
    if len(bad):
        original = dict(zip(bad, records(raw.loc[bad]), strict=True))
        for position, idx in enumerate(canon.records.index):
            if idx in original:
                payloads[position] = json.dumps(original[idx], default=str)
    return payloads


def _settle_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Latest change wins per key; among versions with that change time, a held one wins.

    So a key the uniqueness check held (same change time, different values) stays held
    (``docs/design.md``, "Decisions").
    """
    if frame["key"].is_unique:
        return frame
    frame = frame.assign(_held=frame["check_name"].notna())
    frame = frame.sort_values(["source_ts", "_held"], kind="stable", na_position="first")  # unreadable time: oldest
    return frame.drop_duplicates("key", keep="last").drop(columns="_held")
