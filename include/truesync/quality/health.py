"""A run's health: checks after loading, thresholds that fail a run, alerts on quiet drift.

The quiet problems are the ones that keep syncing bad data without an error: a rising
share of ``mismatched`` or ``overwritten`` records, more ``overdue`` ones than usual.
They are judged per entity against fixed limits and against the flow's recent runs, so
a jump from 0 to 4 mismatched records is flagged even though 4 is a small number.
"""

from __future__ import annotations

import json
from typing import Any

import great_expectations.expectations as gxe
import pandas as pd

from truesync.config import QualityConfig
from truesync.connectors.registry import open_system
from truesync.core.canonical import to_canonical
from truesync.pipeline.extract import EntityJob
from truesync.quality.checks import WARN, Check, run_checks
from truesync.store import checks, runs, staging

POST_LOAD = "post_load"


def post_load_checks(job: EntityJob) -> None:
    """After loading: each created record is in the target exactly once, each synced child finds its parent.

    Both read the target by the keys the run wrote, one fetch per chunk, so they cost what
    the delta costs (a table-wide row count would cost what the table costs, and would count
    other writers too).
    """
    checks.clear(job.store, job.run_id, job.entity, POST_LOAD)
    target = open_system(job.config, job.config.flows[job.flow].target)
    mapping = job.mapping("target")
    for keys in staging.written_keys(job.store, job.run_id, job.entity, job.config.flows[job.flow].chunk_size):
        raw = target.fetch(mapping, keys)
        stats = _created_checks(job, target.name, keys, raw[mapping.key].astype(str))
        for position, (ref_field, parent) in enumerate(job.spec.references.items(), start=2):
            stats += _parent_checks(job, target, raw, ref_field, parent, position)
        checks.record(job.store, job.run_id, job.entity, POST_LOAD, stats)


def _created_checks(job: EntityJob, target: str, written: list[str], found: pd.Series) -> list[dict[str, Any]]:
    """The records this run created are in the target, each exactly once."""
    outcomes = staging.outcomes(job.store, job.run_id, job.entity, written)
    created = [key for key in written if outcomes.get(key) == "created"]
    there = gxe.ExpectColumnValuesToBeInSet(column="key", value_set=sorted(set(found)))
    once = gxe.ExpectColumnValuesToBeUnique(column="key")
    stats = run_checks([Check(there, "key", WARN, f"must be in target '{target}' once created")],
                       pd.DataFrame({"key": created}), "key").stats  # fmt: skip
    return stats + run_checks([Check(once, "key", WARN, "must match one target record, not several")],
                              pd.DataFrame({"key": found[found.isin(created)].tolist()}), "key",
                              first_position=1).stats  # fmt: skip


def _parent_checks(
    job: EntityJob, target: Any, raw: pd.DataFrame, ref_field: str, parent: str, position: int
) -> list[dict[str, Any]]:
    """The children written in this chunk name a parent present in the target."""
    mapping = job.mapping("target")
    parent_mapping = job.config.entity_mapping(job.config.flows[job.flow].target, parent)
    children = to_canonical(raw, mapping, job.spec, [job.spec.key, ref_field]).records
    frame = pd.DataFrame({"key": children[job.spec.key], ref_field: children[ref_field]}).dropna()
    wanted = sorted(set(frame[ref_field]))
    present = set(target.fetch(parent_mapping, wanted)[parent_mapping.key].astype(str)) if wanted else set()
    found = gxe.ExpectColumnValuesToBeInSet(column=ref_field, value_set=sorted(present))
    check = Check(found, ref_field, WARN, f"must name a {parent} present in target '{target.name}'")
    return run_checks([check], frame, "key", first_position=position).stats


def assess(
    quality: QualityConfig, flow: str, entities: dict[str, dict[str, Any]], history: list[dict[str, Any]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Failed thresholds (the run fails) and alerts (reported) for a finished run's entities."""
    failed, alerts = [], []
    for entity, body in entities.items():
        extracted = body["extracted"]
        if not extracted:
            continue
        again = body.get("blocked_again", 0)  # retries of records already in the queue
        blocked, batch = body["classes"].get("invalid", 0) - again, extracted - again
        if batch >= max(quality.min_records, 1) and blocked / batch > quality.max_blocked_share:
            failed.append(
                f"{flow}.{entity}: {blocked} of {batch} new records ({blocked / batch:.1%}) were blocked by "
                f"data-quality checks, above quality.max_blocked_share = {quality.max_blocked_share:.1%}"
            )
        alerts += _class_alerts(quality, flow, entity, body, [h["entities"].get(entity) for h in history])
    return failed, alerts


def _share(body: dict[str, Any], metric: str) -> tuple[int, float]:
    count = body["overdue"] if metric == "overdue" else body["classes"].get(metric, 0)
    return count, count / body["extracted"] if body["extracted"] else 0.0


def _class_alerts(
    quality: QualityConfig, flow: str, entity: str, body: dict[str, Any], past: list[dict[str, Any] | None]
) -> list[dict[str, Any]]:
    alerts = []
    earlier = [p for p in past if p and p["extracted"]]
    for metric, limit in quality.max_class_share.items():
        count, share = _share(body, metric)
        if share > limit and body["extracted"] >= quality.min_records:
            message = f"{flow}.{entity}: {metric} is {share:.1%} ({count} records), above the limit of {limit:.1%}"
            alerts.append(_alert(entity, metric, share, limit, "threshold", message))
        if not earlier or count < quality.jump_min_records:
            continue
        usual = sum(_share(p, metric)[1] for p in earlier) / len(earlier)
        if share > usual * quality.jump_factor:
            message = (
                f"{flow}.{entity}: {metric} jumped to {share:.1%} ({count} records) from an average of "
                f"{usual:.1%} over the previous {len(earlier)} runs (alert above {quality.jump_factor:g}x)"
            )
            alerts.append(_alert(entity, metric, share, usual * quality.jump_factor, "jump", message))
    return alerts


def post_load_alert(flow: str, entity: str, item: dict[str, Any]) -> dict[str, Any]:
    """A failed check after loading: the data is in the target, so it is an alert, not a block."""
    found = item["error"] or f"{item['unexpected']} of {item['evaluated']} failed"
    message = f"{flow}.{entity}: after loading, '{item['column']}' {item['rule']}: {found}"
    return _alert(entity, item["column"], float(item["unexpected"]), 0.0, POST_LOAD, message)


def crash_alert(flow: str, entity: str, what: str, error: str) -> dict[str, Any]:
    """A check that crashed after loading (or the Data Docs build): reported, the run goes on."""
    where = f"{flow}.{entity}" if entity else flow
    return _alert(entity, what, 0.0, 0.0, "check_error", f"{where}: {what} could not run: {error}")


def _alert(entity: str, metric: str, value: float, limit: float, kind: str, message: str) -> dict[str, Any]:
    return {"entity": entity, "metric": metric, "value": round(value, 6), "limit": round(limit, 6), "kind": kind,
            "message": message}  # fmt: skip


def recent_reports(store: Any, flow: str, run_id: str, limit: int) -> list[dict[str, Any]]:
    """Reports of the flow's previous real runs that finished, newest first."""
    previous = runs.latest(store, flow, limit + 20, finished=True)  # room for dry runs, which are left out
    reports = []
    for run in previous:
        if run["run_id"] == run_id or run["dry_run"]:
            continue
        report = json.loads(run["report"])
        if "entities" in report:
            reports.append(report)
    return reports[:limit]
