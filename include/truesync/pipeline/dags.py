"""How a flow appears in Airflow: its DAGs, the store run id of a DAG run, and its target's pool.

Each flow has an incremental DAG ``truesync_<flow>`` and a compare DAG ``truesync_<flow>_compare``;
a flow that translates codes through a code table also has ``truesync_<flow>_reprocess``, run by
hand. A DAG run's truesync run id is ``<flow>:<Airflow run id>``, with ``compare:`` or
``reprocess:`` before the Airflow run id for those DAGs (the DAGs' run ids can be equal), and
``#<n>`` after it when the DAG run was cleared ``n`` times. A reprocess task takes the
pool's slots as an incremental task does.

**Pools: one writer per target.** Every task of a flow's DAGs runs in the Airflow pool of the
flow's target system, ``truesync_<target>``, whose size is the target's ``max_parallel_tasks``
(N). A task that writes to the target (``sync``, a compare's ``deletes``) takes all N slots, and
so does every task of a compare; the other tasks of an incremental or reprocess run (``plan``,
``extract``, ``partition``, ``finalize``) take one. The scheduler starts a task that takes all N
only when no task holds a slot of the pool, and starts no other task of the pool while it runs.
So no two writes to one target ever overlap, whichever runs (a backfill and a scheduled run of
one flow) or flows (several into one target) they belong to, and no compare task runs beside
another task on its target. Airflow enforces it per task (running and queued tasks hold their
slots; a task waiting for a retry or for its upstream holds none), so two runs' writes can
alternate; the newer source version still wins, because a version older than the one the
ledger last synced is never written (``pipeline.load``). Up to N tasks that only read run
beside each other.

Airflow never runs a task whose pool does not exist, or is smaller than its ``pool_slots`` (the
scheduler only logs a warning; the task waits in ``scheduled``). :func:`target_pools` lists the
pools in the format of ``airflow pools import``; ``truesync pools`` prints it.

**Assets: a flow that waits for another flow's writes.** Each ``sync`` task names the Airflow
Asset of what it writes, ``<target>.<entity>`` (URI ``truesync://<target>/<entity>``), through an
``AssetAlias`` of that name, and emits an event of the Asset only when it wrote records there, in
a run that is neither a dry run nor a backfill (:func:`emits`); the event's ``extra`` carries the
run's window. A flow with ``triggered_by: [<target>.<entity>, ...]`` is scheduled on its cron
*or* on any of those Assets (``AssetOrTimeSchedule``). A run an Asset starts has no data interval:
it syncs from the flow's watermark up to the end of the latest window among the events that started
it (:func:`triggered_until`), so it never reaches past what the other flow has written. A backfill
emits nothing, because Airflow would start the waiting flow once per backfilled interval, each
run reaching up to now (apache/airflow#52665): backfill the waiting flow over the same dates instead.

**Task start-up.** Each task imports its stage (pandas, SQLAlchemy, and Great Expectations where
it checks user expectations or builds Data Docs: about two seconds of CPU, most of a short task).
:func:`preloaded_workers` has the workers import :data:`TASK_MODULES` once: the LocalExecutor's
start from a ``forkserver`` that imported them, a Celery worker imports them before it forks its
pool. Airflow forks each task from a worker, so the task inherits them instead of importing them
again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from truesync.config import Config

DAG_PREFIX = "truesync_"
COMPARE_SUFFIX = "_compare"
COMPARE_RUN = "compare:"
REPROCESS_SUFFIX = "_reprocess"
REPROCESS_RUN = "reprocess:"
# Every module the DAG file imports, at its top or inside a task (tests/unit/test_architecture.py holds it to that).
TASK_MODULES = (
    "airflow.sdk",
    "truesync.pipeline.compare",
    "truesync.pipeline.extract",
    "truesync.pipeline.finalize",
    "truesync.pipeline.load",
    "truesync.pipeline.reprocess",
    "truesync.quality.gx",  # imported on first use: user expectations, Data Docs
)


def preloaded_workers() -> dict[str, str]:
    """Airflow settings (environment variables) that load :data:`TASK_MODULES` into the workers.

    The scheduler starts its LocalExecutor workers from a forkserver holding them
    (``[scheduler] mp_start_method`` and ``mp_forkserver_preload``, Airflow 3.3); Python skips a
    module that fails to import there without a word, and each task then imports it itself.
    A Celery worker takes ``pipeline.celery_workers.CELERY_CONFIG`` (``[celery] celery_config_options``).
    """
    return {
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(TASK_MODULES),
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "truesync.pipeline.celery_workers.CELERY_CONFIG",
    }


def asset_uri(name: str) -> str:
    """The URI of the Asset ``<target>.<entity>``: ``truesync://<target>/<entity>``."""
    target, entity = name.split(".", 1)
    return f"truesync://{target}/{entity}"


def written(counts: dict[str, int]) -> int:
    """How many records a ``sync`` task's counts say it wrote: created and updated."""
    return counts.get("created", 0) + counts.get("updated", 0)


def emits(run_type: str, dry_run: bool, counts: dict[str, int]) -> bool:
    """Whether a ``sync`` task emits its Asset's event: it wrote records, in neither a dry run nor a backfill."""
    return run_type != "backfill" and not dry_run and written(counts) > 0


def triggered_until(events: dict[Any, list[Any]]) -> datetime | None:
    """The end of the latest window among the Asset events that started a run (``window_end`` in their
    ``extra``); None when no event carries one (a run not started by an Asset, or an event from elsewhere)."""
    ends = [datetime.fromisoformat(e.extra["window_end"]) for each in events.values() for e in each
            if "window_end" in (e.extra or {})]  # fmt: skip
    return max(ends, default=None)


def dag_id(flow: str, compare: bool = False) -> str:
    return f"{DAG_PREFIX}{flow}{COMPARE_SUFFIX if compare else ''}"


def reprocess_dag_id(flow: str) -> str:
    return f"{DAG_PREFIX}{flow}{REPROCESS_SUFFIX}"


def run_key(dag: str, airflow_run_id: str) -> tuple[str, str]:
    """The flow of a truesync DAG, and what follows ``<flow>:`` in the run id of its DAG run (before ``#<n>``).

    A flow named like another flow's compare or reprocess DAG (``x_compare`` beside ``x``) is not
    told apart here.
    """
    flow = dag.removeprefix(DAG_PREFIX)
    for suffix, marker in ((COMPARE_SUFFIX, COMPARE_RUN), (REPROCESS_SUFFIX, REPROCESS_RUN)):
        if flow.endswith(suffix):
            return flow.removesuffix(suffix), f"{marker}{airflow_run_id}"
    return flow, airflow_run_id


def store_run_id(dag: str, airflow_run_id: str, clears: int) -> str:
    """The truesync run id of one attempt of a DAG run: ``<flow>:[compare:]<run id>[#<clears>]``."""
    flow, key = run_key(dag, airflow_run_id)
    return f"{flow}:{key}" + (f"#{clears}" if clears else "")


def translated_entities(config: Config, flow: str, table: str | None = None) -> list[str]:
    """The flow's entities, in load order, that some code table translates (``table``: that one)."""
    tables = {entity: config.code_tables_of(flow, entity) for entity in config.flows[flow].entities}
    return [e for e in config.load_order(list(tables)) if any(table in (None, t.name) for t in tables[e])]


def pool_name(system: str) -> str:
    return f"{DAG_PREFIX}{system}"


def pool_slots(config: Config, flow: str, alone: bool) -> tuple[str, int]:
    """The pool of a flow's tasks and the slots a task takes: all of them for a task that must work
    on the target alone (a write, or any task of a compare), one otherwise."""
    target = config.flows[flow].target
    return pool_name(target), config.systems[target].max_parallel_tasks if alone else 1


def target_pools(config: Config) -> dict[str, dict[str, Any]]:
    """One pool per system some flow writes to, as ``airflow pools import`` reads them: name -> slots, description."""
    targets = sorted({flow.target for flow in config.flows.values()})
    return {
        pool_name(system): {
            "slots": config.systems[system].max_parallel_tasks,
            "description": f"truesync tasks working on {system}; a compare task takes every slot",
            "include_deferred": False,
        }
        for system in targets
    }
