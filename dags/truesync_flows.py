"""One DAG per flow in ``include/config/flows.yaml``: thin wiring of the truesync engine.

Each DAG: ``plan`` (window from the data interval) -> one TaskGroup per entity in
dependency order (``extract`` -> ``partition`` -> ``sync`` mapped over key ranges, so
several workers share a large delta) -> ``finalize`` (conservation check, watermark,
report). Data moves through the store; XCom carries only ids, key bounds and counts.

The stage modules (``truesync.pipeline.extract``, ``load``, ``finalize``) import Great
Expectations, which takes seconds; the dag-processor parses this file every 30 seconds.
So, as Airflow advises for top-level code, each task imports its stage inside the task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, Param, TaskGroup, chain, task
from airflow.sdk.exceptions import AirflowFailException
from sqlalchemy.exc import OperationalError

from truesync.config import Config, load_config
from truesync.connectors.errors import SystemUnavailable
from truesync.pipeline.job import EntityJob, begin_run
from truesync.pipeline.window import Window, plan_window
from truesync.store import Store, runs
from truesync.store.staging import Partition

MAX_RETRY_DELAY = timedelta(minutes=30)


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

Review: `truesync report --flow {flow}` and `truesync exceptions list --flow {flow}`.
"""


def build_dag(config: Config, flow: str) -> DAG:
    spec = config.flows[flow]
    with DAG(
        dag_id=f"truesync_{flow}",
        description=spec.description or f"{spec.source} → {spec.target}",
        schedule=CronDataIntervalTimetable(spec.schedule, timezone="UTC"),
        start_date=datetime.combine(spec.start_date, datetime.min.time(), tzinfo=UTC),
        catchup=False,
        max_active_runs=spec.max_active_runs,
        doc_md=_doc(config, flow),
        tags=["truesync", spec.source, spec.target, *spec.tags],
        params={"dry_run": Param(False, type="boolean", description="classify and report, write nothing")},
        default_args={
            "retries": spec.retries,
            "retry_delay": spec.retry_delay,
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": MAX_RETRY_DELAY,
        },
    ) as dag:

        @task
        def plan(**context: Any) -> dict[str, Any]:
            with _only_transient_retries():
                store, dag_run = Store(), context["dag_run"]
                window = plan_window(
                    context.get("data_interval_start"),
                    context.get("data_interval_end"),
                    dag_run.run_after,
                    spec.lookback,
                    runs.watermark(store, flow),
                )
                clears = getattr(dag_run, "clear_number", 0) or 0
                run_id = f"{flow}:{dag_run.run_id}" + (f"#{clears}" if clears else "")
                dry_run = bool(context["params"].get("dry_run"))
                begin_run(store, flow, run_id, window, dry_run)
                return {"run_id": run_id, "dry_run": dry_run, **window.as_dict()}

        @task
        def finalize(plan: dict[str, Any]) -> dict[str, Any]:
            from truesync.pipeline.finalize import finish_run

            with _only_transient_retries():
                report = finish_run(config, Store(), flow, plan["run_id"])
                # The "Run report" extra link (plugins/truesync_reports.py) opens report["html"] over HTTP.
                return {
                    "status": report["status"],
                    "totals": report["totals"],
                    "report": report["path"],
                    "html": report.get("html"),
                }

        @task(trigger_rule="one_failed", retries=0)
        def record_failure(plan: dict[str, Any], **context: Any) -> None:
            from truesync.pipeline.finalize import fail_run

            run_id = context["dag_run"].run_id
            states = context["ti"].get_task_states(dag_id=context["dag"].dag_id, run_ids=[run_id]).get(run_id, {})
            failed = sorted(t for t, state in states.items() if state in ("failed", "upstream_failed"))
            fail_run(Store(), plan["run_id"], f"failed tasks: {', '.join(failed)}")

        planned = plan()
        groups = [_entity_group(config, flow, entity, planned) for entity in config.load_order(spec.entities)]
        done = finalize(planned)
        chain(planned, *groups, done)
        record_failure(planned) << groups
    return dag


def _entity_group(config: Config, flow: str, entity: str, planned: Any) -> TaskGroup:
    target = config.flows[flow].target
    asset = Asset(name=f"{target}.{entity}", uri=f"truesync://{target}/{entity}")

    def job(plan: dict[str, Any]) -> EntityJob:
        return EntityJob(config, Store(), flow, entity, plan["run_id"])

    with TaskGroup(group_id=entity, tooltip=f"extract and sync {entity}") as group:

        @task(task_id="extract")
        def extract(plan: dict[str, Any]) -> int:
            from truesync.pipeline.extract import extract_entity

            with _only_transient_retries():
                return extract_entity(job(plan), _window(plan))

        @task(task_id="partition")
        def partition(plan: dict[str, Any]) -> list[dict[str, Any]]:
            from truesync.pipeline.load import plan_partitions

            with _only_transient_retries():
                return [p.as_dict() for p in plan_partitions(job(plan))]

        @task(task_id="sync", outlets=[asset], map_index_template="{{ part['index'] }}")
        def sync(plan: dict[str, Any], part: dict[str, Any]) -> dict[str, int]:
            from truesync.pipeline.load import sync_entity

            with _only_transient_retries():
                return sync_entity(job(plan), _window(plan), plan["dry_run"], Partition(**part))

        parts = partition(planned)
        extract(planned) >> parts
        sync.partial(plan=planned).expand(part=parts)
    return group


_config = load_config()
for _flow in _config.flows:
    globals()[f"truesync_{_flow}"] = build_dag(_config, _flow)
