"""Two DAGs per flow in ``include/config/flows.yaml`` (three with code tables): thin wiring of the engine.

The incremental DAG ``truesync_<flow>``: ``plan`` (window from the data interval) -> one
TaskGroup per entity in dependency order (``extract`` -> ``partition`` -> ``sync`` mapped
over key ranges, so several workers share a large delta) -> ``finalize`` (conservation
check, watermark, report).

The compare DAG ``truesync_<flow>_compare``: ``plan`` (a compare run, window everything up to
now) -> one TaskGroup per entity in dependency order (``compare`` both sides and the ledger
-> ``partition`` -> ``sync`` the repairs, mapped) -> ``deletes`` (the flow's delete policy,
children first, under the share guard) -> ``finalize`` (report; the watermark stays).

The reprocess DAG ``truesync_<flow>_reprocess``, for a flow that translates codes through code
tables, is triggered by hand: ``plan`` (a reprocess run; params ``code_table``, ``dry_run``) ->
one TaskGroup per translated entity (``stage`` the records behind the tables' current versions
-> ``partition`` -> ``sync``) -> ``finalize`` (report; the watermark stays).

The DAGs' tasks run in their target's pool; a task that writes to the target (``sync``,
``deletes``) and every compare task take every slot, so writes to one target never overlap and
a compare never works on a target beside another task (``truesync.pipeline.dags``). Data moves through the
store; XCom carries only ids, key bounds and counts.

The stage modules (``truesync.pipeline.extract``, ``load``, ``finalize``) import Great
Expectations, which takes seconds; the dag-processor parses this file every 30 seconds.
So, as Airflow advises for top-level code, each task imports its stage inside the task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    Asset,
    AssetAlias,
    AssetAny,
    AssetOrTimeSchedule,
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    Param,
    TaskGroup,
    chain,
    task,
)
from airflow.sdk.exceptions import AirflowFailException
from sqlalchemy.exc import OperationalError

from truesync.config import Config, load_config
from truesync.connectors.errors import SystemUnavailable
from truesync.pipeline.dags import (
    asset_uri,
    dag_id,
    emits,
    pool_slots,
    reprocess_dag_id,
    store_run_id,
    translated_entities,
    triggered_until,
    written,
)
from truesync.pipeline.job import REPROCESS, EntityJob, begin_run
from truesync.pipeline.window import Window, plan_window
from truesync.store import Store, runs
from truesync.store.staging import Partition

MAX_RETRY_DELAY = timedelta(minutes=30)
# A compare task goes before incremental tasks waiting for the same pool.
COMPARE_PRIORITY = 1000


@contextmanager
def _only_transient_retries() -> Iterator[None]:
    """Let Airflow retry transient failures (a system or the store unreachable or locked); fail the rest at once."""
    try:
        yield
    except (SystemUnavailable, OperationalError):
        raise
    except Exception as exc:  # noqa: BLE001 - anything else will not get better by retrying
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def _window(plan: dict[str, Any]) -> Window:
    return Window(datetime.fromisoformat(plan["start"]), datetime.fromisoformat(plan["end"]))


def _doc(config: Config, flow: str) -> str:
    spec = config.flows[flow]
    order = " → ".join(config.load_order(spec.entities))
    owned = "\n".join(
        f"- `{e}`: syncs {', '.join(f'`{f}`' for f in config.synced_fields(flow, e)) or 'nothing'}"
        for e in config.load_order(spec.entities)
    )
    return f"""### truesync flow `{flow}`: {spec.source} → {spec.target}

{spec.description}

Entities load in dependency order: {order}.

{owned}

**Window**: `[data_interval_start - {spec.lookback}, data_interval_end)`, reaching back to the last
committed watermark when that is earlier. A manual run without a logical date syncs everything
changed since the last watermark (since 1970 on first contact) up to its `run_after` time;
unpausing starts the latest interval's scheduled run too, which may commit a watermark first, so
for the first full load of systems that hold data see `docs/operating.md`.
Freshness SLA: {spec.freshness_sla}. Trigger with `dry_run=true` to classify and report without writing.
{_trigger_doc(config, flow)}{_pool_doc(config, flow)}
Review: `truesync report --flow {flow}` and `truesync exceptions list --flow {flow}`.
"""


def _trigger_doc(config: Config, flow: str) -> str:
    assets = config.flows[flow].triggered_by
    if not assets:
        return ""
    named = ", ".join(f"`{name}`" for name in assets)
    return f"""
**Also started by** the Assets {named} (`triggered_by`): when another flow wrote records there, outside a
backfill or a dry run, a run syncs from the watermark up to the end of that flow's window.
"""


def _compare_doc(config: Config, flow: str) -> str:
    spec = config.flows[flow]
    deletes = "\n".join(
        f"- `{e}`: {spec.compare.deletes_of(e).policy}" for e in reversed(config.load_order(spec.entities))
    )
    return f"""### truesync full compare of flow `{flow}`: {spec.source} → {spec.target}

Compares **every** record of the flow's entities, not a window's: every key on both sides, every
field the flow syncs, both against the ledger. It finds the drift no change time shows (target
edits that kept their change time, source deletes, records created only in the target, records
an increment missed), classifies each difference (`missing`, `deleted`, `target_only`,
`overwritten`, `delayed`, `mismatched`, flagged `quiet` when no change time shows it) and repairs
what the flow's rules allow, through the same sync as the incremental DAG `{dag_id(flow)}`.

Entities in dependency order: {" → ".join(config.load_order(spec.entities))}, each `compare` →
`partition` → `sync`. Then `deletes`, children first, for records whose source record is gone:

{deletes}

`report` lists them, `soft` marks them, `delete` removes them; above `compare.max_delete_share`
= {spec.compare.max_delete_share:.2%} of an entity's target rows, or with an empty source, nothing is
deleted and the run fails. `finalize` writes the report, with its quiet-drift section; the
watermark never moves.

**Schedule**: `{spec.compare.schedule}` (cron, UTC; `compare.schedule`). Unpausing starts nothing
at once: the first compare runs at the next scheduled time; trigger a run by hand for one now.
Trigger with `dry_run=true` to list every planned create, update and delete and write nothing.
{_pool_doc(config, flow)}
Review: `truesync report --flow {flow}` and `truesync exceptions list --flow {flow}`.
"""


def _pool_doc(config: Config, flow: str) -> str:
    pool, slots = pool_slots(config, flow, alone=True)
    return f"""
**Pool** `{pool}` ({slots} slots): a `sync` task takes all {slots}, as does every task of
`{dag_id(flow, compare=True)}`; the other tasks of `{dag_id(flow)}` take one. So only one task at a
time writes to `{config.flows[flow].target}`, whichever run or flow it belongs to, and a compare never
runs beside another task there. The pool must exist (`truesync pools`, see `docs/operating.md`).
"""


def _dag_args(config: Config, flow: str, kind: str) -> dict[str, Any]:
    """What a flow's DAGs share; each task runs in the target's pool, a compare task holding all of it
    (a ``sync`` task of every DAG holds all of it too: ``_entity_group``).

    ``kind`` is the DAG's: ``sync`` (incremental), ``compare`` or ``reprocess``.
    """
    spec = config.flows[flow]
    compare = kind == "compare"
    pool, slots = pool_slots(config, flow, alone=compare)
    ordering = {"priority_weight": COMPARE_PRIORITY, "weight_rule": "absolute"} if compare else {}
    return {
        "dag_id": reprocess_dag_id(flow) if kind == REPROCESS else dag_id(flow, compare),
        "catchup": False,
        "tags": ["truesync", spec.source, spec.target, *spec.tags, *([kind] if kind != "sync" else [])],
        "params": {"dry_run": Param(False, type="boolean", description="classify and report, write nothing")},
        "default_args": {
            "retries": spec.retries,
            "retry_delay": spec.retry_delay,
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": MAX_RETRY_DELAY,
            "pool": pool,
            "pool_slots": slots,
            **ordering,
        },
    }


def _run_id(context: dict[str, Any]) -> str:
    dag_run = context["dag_run"]
    return store_run_id(dag_run.dag_id, dag_run.run_id, getattr(dag_run, "clear_number", 0) or 0)


def _asset(name: str) -> Asset:
    """The Asset ``<target>.<entity>`` a flow's ``sync`` writes (``truesync.pipeline.dags``)."""
    return Asset(name=name, uri=asset_uri(name))


def _schedule(config: Config, flow: str) -> CronDataIntervalTimetable | AssetOrTimeSchedule:
    """The flow's cron; with ``triggered_by``, also any write of another flow into those Assets."""
    spec = config.flows[flow]
    cron = CronDataIntervalTimetable(spec.schedule, timezone="UTC")
    if not spec.triggered_by:
        return cron
    return AssetOrTimeSchedule(timetable=cron, assets=AssetAny(*(_asset(name) for name in spec.triggered_by)))


def build_dag(config: Config, flow: str) -> DAG:
    spec = config.flows[flow]
    with DAG(
        description=spec.description or f"{spec.source} → {spec.target}",
        schedule=_schedule(config, flow),
        start_date=datetime.combine(spec.start_date, datetime.min.time(), tzinfo=UTC),
        max_active_runs=spec.max_active_runs,
        doc_md=_doc(config, flow),
        **_dag_args(config, flow, "sync"),
    ) as dag:

        @task
        def plan(**context: Any) -> dict[str, Any]:
            with _only_transient_retries():
                store, dag_run = Store(), context["dag_run"]
                window = plan_window(
                    context.get("data_interval_start"),
                    context.get("data_interval_end"),
                    triggered_until(context.get("triggering_asset_events") or {}) or dag_run.run_after,
                    spec.lookback,
                    runs.watermark(store, flow),
                )
                run_id, dry_run = _run_id(context), bool(context["params"].get("dry_run"))
                begin_run(store, flow, run_id, window, dry_run)
                return {"run_id": run_id, "dry_run": dry_run, **window.as_dict()}

        planned = plan()
        groups = [_entity_group(config, flow, e, planned, "extract") for e in config.load_order(spec.entities)]
        chain(planned, *groups, _finalize(config, flow, planned, compare=False))
        _record_failure(planned) << groups
    return dag


def build_compare_dag(config: Config, flow: str) -> DAG:
    """The flow's full compare. It covers everything up to now, so it needs no data interval: a
    ``CronTriggerTimetable`` starts it at ``compare.schedule``, and without a start date unpausing
    waits for the next scheduled time instead of running the latest one at once.

    ``run_immediately`` is a zero buffer, not False: Airflow 3.3 treats False like its default,
    which still runs the latest time when it passed less than a tenth of the schedule's gap ago
    (16.8 hours of a weekly schedule; apache/airflow#64162)."""
    spec = config.flows[flow]
    with DAG(
        description=f"Full compare of {spec.source} → {spec.target}: finds and repairs quiet drift",
        schedule=CronTriggerTimetable(spec.compare.schedule, timezone="UTC", run_immediately=timedelta(0)),
        max_active_runs=1,
        doc_md=_compare_doc(config, flow),
        **_dag_args(config, flow, "compare"),
    ) as dag:

        @task
        def plan(**context: Any) -> dict[str, Any]:
            from truesync.pipeline.compare import begin_compare

            with _only_transient_retries():
                run_id, dry_run = _run_id(context), bool(context["params"].get("dry_run"))
                window = begin_compare(Store(), flow, run_id, dry_run)
                return {"run_id": run_id, "dry_run": dry_run, **window.as_dict()}

        @task
        def deletes(plan: dict[str, Any]) -> dict[str, int]:
            from truesync.pipeline.compare import apply_deletes

            with _only_transient_retries():
                return apply_deletes(config, Store(), flow, plan["run_id"], plan["dry_run"])

        planned = plan()
        groups = [_entity_group(config, flow, e, planned, "compare") for e in config.load_order(spec.entities)]
        removed = deletes(planned)
        chain(planned, *groups, removed, _finalize(config, flow, planned, compare=True))
        _record_failure(planned) << [*groups, removed]
    return dag


def build_reprocess_dag(config: Config, flow: str) -> DAG:
    """Translate again what the current versions of the flow's code tables translate differently.

    Run by hand from the UI (no schedule); ``code_table`` narrows it to one table.
    """
    spec = config.flows[flow]
    tables = sorted({t.label for entity in spec.entities for t in config.code_tables_of(flow, entity)})
    args = _dag_args(config, flow, REPROCESS)
    args["params"] = {
        **args["params"],
        "code_table": Param("", type="string", enum=["", *(label.split("@")[0] for label in tables)],
                            description="only records behind this code table; empty: every table of the flow"),
    }  # fmt: skip
    with DAG(
        description=f"Reprocess {spec.source} → {spec.target} through code tables {', '.join(tables)}",
        schedule=None,
        max_active_runs=1,
        doc_md=_reprocess_doc(config, flow, tables),
        **args,
    ) as dag:

        @task
        def plan(**context: Any) -> dict[str, Any]:
            from truesync.pipeline.reprocess import begin_reprocess

            with _only_transient_retries():
                run_id, dry_run = _run_id(context), bool(context["params"].get("dry_run"))
                table = context["params"].get("code_table") or None
                window = begin_reprocess(config, Store(), flow, run_id, dry_run, table)
                return {"run_id": run_id, "dry_run": dry_run, "code_table": table, **window.as_dict()}

        planned = plan()
        groups = [_entity_group(config, flow, e, planned, REPROCESS) for e in translated_entities(config, flow)]
        chain(planned, *groups, _finalize(config, flow, planned, compare=False))
        _record_failure(planned) << groups
    return dag


def _reprocess_doc(config: Config, flow: str, tables: list[str]) -> str:
    spec = config.flows[flow]
    return f"""### truesync reprocess of flow `{flow}`: {spec.source} → {spec.target}

Finds the records translated with an older version of a code table ({", ".join(f"`{t}`" for t in tables)}
now), and those held in the exception queue for a code the table now knows; re-reads them from
`{spec.source}` by key, translates them again and writes only what changed, with an audit row for
every value it replaces. Records translated the same are left alone. Trigger it after committing
a new version of a table; `dry_run` reports what would change. The watermark is not moved.
Entities: {" → ".join(translated_entities(config, flow))}. Same as `truesync reprocess {flow}`.
"""


def _finalize(config: Config, flow: str, planned: Any, compare: bool) -> Any:
    @task
    def finalize(plan: dict[str, Any]) -> dict[str, Any]:
        with _only_transient_retries():
            if compare:
                from truesync.pipeline.compare import finish_compare as finish
            else:
                from truesync.pipeline.finalize import finish_run as finish
            report = finish(config, Store(), flow, plan["run_id"])
            # The "Run report" extra link (plugins/truesync_reports.py) opens report["html"] over HTTP.
            return {
                "status": report["status"],
                "totals": report["totals"],
                "report": report["path"],
                "html": report.get("html"),
            }

    return finalize(planned)


def _record_failure(planned: Any) -> Any:
    @task(trigger_rule="one_failed", retries=0)
    def record_failure(plan: dict[str, Any], **context: Any) -> None:
        from truesync.pipeline.finalize import fail_run

        run_id = context["dag_run"].run_id
        states = context["ti"].get_task_states(dag_id=context["dag"].dag_id, run_ids=[run_id]).get(run_id, {})
        failed = sorted(t for t, state in states.items() if state in ("failed", "upstream_failed"))
        fail_run(Store(), plan["run_id"], f"failed tasks: {', '.join(failed)}")

    return record_failure(planned)


def _entity_group(config: Config, flow: str, entity: str, planned: Any, step: str) -> TaskGroup:
    """``extract`` (the window's changes), ``compare`` (every record) or ``stage`` (a reprocess: the
    records behind the code tables) -> ``partition`` -> ``sync`` mapped.
    """
    target = config.flows[flow].target
    alias = AssetAlias(f"{target}.{entity}")

    def job(plan: dict[str, Any]) -> EntityJob:
        return EntityJob(config, Store(), flow, entity, plan["run_id"])

    first = "stage" if step == REPROCESS else step
    with TaskGroup(group_id=entity, tooltip=f"{first} and sync {entity}") as group:

        @task(task_id=first)
        def scan(plan: dict[str, Any]) -> int:
            with _only_transient_retries():
                if step == "compare":
                    from truesync.pipeline.compare import compare_entity

                    return compare_entity(job(plan))
                if step == REPROCESS:
                    from truesync.pipeline.reprocess import stage_translated_otherwise

                    return stage_translated_otherwise(job(plan), plan["code_table"])
                from truesync.pipeline.extract import extract_entity

                return extract_entity(job(plan), _window(plan))

        @task(task_id="partition")
        def partition(plan: dict[str, Any]) -> list[dict[str, Any]]:
            from truesync.pipeline.load import plan_partitions

            with _only_transient_retries():
                return [p.as_dict() for p in plan_partitions(job(plan))]

        # The one task that writes to the target: it takes the whole pool (one writer per target).
        # What it wrote is an Asset event (for the flows ``triggered_by`` it), outside backfills and dry runs.
        @task(task_id="sync", outlets=[alias], map_index_template="{{ part['index'] }}",
              pool_slots=pool_slots(config, flow, alone=True)[1])  # fmt: skip
        def sync(plan: dict[str, Any], part: dict[str, Any], **context: Any) -> dict[str, int]:
            from truesync.pipeline.load import sync_entity

            with _only_transient_retries():
                counts = sync_entity(job(plan), _window(plan), plan["dry_run"], Partition(**part))
            if emits(context["dag_run"].run_type, plan["dry_run"], counts):
                extra = {"flow": flow, "run_id": plan["run_id"], "window_start": plan["start"],
                         "window_end": plan["end"], "written": written(counts)}  # fmt: skip
                context["outlet_events"][alias].add(_asset(alias.name), extra=extra)
            return counts

        parts = partition(planned)
        scan(planned) >> parts
        sync.partial(plan=planned).expand(part=parts)
    return group


_config = load_config()
for _flow in _config.flows:
    globals()[dag_id(_flow)] = build_dag(_config, _flow)
    globals()[dag_id(_flow, compare=True)] = build_compare_dag(_config, _flow)
    if translated_entities(_config, _flow):
        globals()[reprocess_dag_id(_flow)] = build_reprocess_dag(_config, _flow)
