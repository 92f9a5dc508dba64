"""Reprocess: translate again the records a code table's newer version would translate differently.

When a code table gets a new version (a code added, a meaning corrected), two kinds of record
are behind it: records synced under an older version (the ledger's ``code_versions`` lacks
the current one), and records held in the queue for a code no version knew (check
``known_code`` on a field the table translates). A reprocess run re-reads exactly those from
the source by key, translates them with the current tables and syncs them as usual: a record
whose translation did not change is ``in_sync`` and written nowhere (its ledger entry then
names the current version), one that did is updated with an audit row for every value it
replaces, and a held record whose code is now known is created or updated and resolves.

It is a run of kind ``reprocess``: counted, checked and reported like any run, never overdue,
and it leaves the watermark alone. ``truesync reprocess`` runs it in one process; the DAG
``truesync_<flow>_reprocess`` runs it from the UI (``dags/truesync_flows.py``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

from truesync.config import Config
from truesync.connectors.errors import ConfigurationProblem
from truesync.core.canonical import EPOCH
from truesync.pipeline import progress
from truesync.pipeline.dags import translated_entities
from truesync.pipeline.extract import stage_fetched
from truesync.pipeline.finalize import finish_run
from truesync.pipeline.job import REPROCESS, EntityJob, begin_run
from truesync.pipeline.load import plan_partitions, sync_entity
from truesync.pipeline.window import Window
from truesync.store import Store, code_tables, ledger, queue, runs, staging
from truesync.store.core import utcnow


def begin_reprocess(config: Config, store: Store, flow: str, run_id: str, dry_run: bool, table: str | None) -> Window:
    """Register a reprocess run (window: everything up to now); a table no entity of the flow uses is refused."""
    if table is not None and table not in config.code_tables:
        raise ConfigurationProblem(f"no code table '{table}' (expected {config.directory / 'codes' / table}.yaml)")
    if not translated_entities(config, flow, table):
        which = f"code table '{table}'" if table else "any code table"
        raise ConfigurationProblem(f"flow '{flow}' translates no entity through {which}: nothing to reprocess")
    window = Window(EPOCH, utcnow())
    begin_run(store, flow, run_id, window, dry_run, kind=REPROCESS)
    return window


def stage_translated_otherwise(job: EntityJob, table: str | None) -> int:
    """Stage the entity's records behind the current code tables (``table``: behind that one); returns how many."""
    began = time.monotonic()
    code_tables.register(job.store, job.code_tables(), job.run_id, str(job.config.directory))  # all translate
    tables = [t for t in job.code_tables() if table is None or t.name == table]
    staging.clear(job.store, job.run_id, job.entity)
    source = job.source()
    staged = stage_fetched(job, source, _keys(job, tables)) if tables else 0
    counts = {"extracted": staged, "extract_seconds": time.monotonic() - began}
    runs.record_counts(job.store, job.run_id, job.entity, "extract", counts)
    progress.reprocess_staged(job, [t.label for t in tables], staged, counts["extract_seconds"])
    return staged


def _keys(job: EntityJob, tables: list[Any]) -> Iterator[list[str]]:
    """Keys synced under other versions of ``tables``, then keys held for a code of a field they translate."""
    size = job.config.flows[job.flow].chunk_size
    source = job.mapping("source")
    fields = [field for field, t in source.tables.items() if t in tables]
    labels = [t.label for t in tables]
    return itertools.chain(
        ledger.translated_otherwise(job.store, job.flow, job.entity, labels, size),
        queue.held_for_codes(job.store, job.flow, job.entity, fields, size),
    )


def run_reprocess(
    config: Config,
    store: Store,
    flow: str,
    run_id: str,
    entities: list[str] | None = None,
    table: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """The whole reprocess in one process (the CLI, tests): stage, sync and finalize each entity in load order."""
    window = begin_reprocess(config, store, flow, run_id, dry_run, table)
    for entity in translated_entities(config, flow, table):
        if entities and entity not in entities:
            continue
        job = EntityJob(config, store, flow, entity, run_id)
        stage_translated_otherwise(job, table)
        for part in plan_partitions(job):
            sync_entity(job, window, dry_run, part)
    return finish_run(config, store, flow, run_id)
