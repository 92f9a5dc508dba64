"""A whole flow run in one process: the same engine calls the DAG tasks make, in order.

The DAGs run each step as its own task; this runner serves the CLI's ``truesync run``,
the tests of the engine and the benchmark.
"""

from __future__ import annotations

from typing import Any

from truesync.config import Config
from truesync.pipeline.extract import extract_entity
from truesync.pipeline.finalize import finish_run
from truesync.pipeline.job import EntityJob, begin_run
from truesync.pipeline.load import plan_partitions, sync_entity
from truesync.pipeline.window import Window
from truesync.store import Store


def run_flow(
    config: Config, store: Store, flow: str, run_id: str, window: Window, dry_run: bool = False
) -> dict[str, Any]:
    """Extract and sync every entity of the flow in dependency order, partition by partition, then finalize."""
    begin_run(store, flow, run_id, window, dry_run)
    for entity in config.load_order(config.flows[flow].entities):
        job = EntityJob(config, store, flow, entity, run_id)
        extract_entity(job, window)
        for part in plan_partitions(job):
            sync_entity(job, window, dry_run, part)
    return finish_run(config, store, flow, run_id)
