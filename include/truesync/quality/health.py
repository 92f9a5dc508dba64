"""A run's health: checks after loading, thresholds that fail a run, alerts on quiet drift.

The quiet problems are the ones that keep syncing bad data without an error: a rising
share of ``mismatched`` or ``overwritten`` records, more ``overdue`` ones than usual.
They are judged per entity against fixed limits and against the flow's recent runs, so
a jump from 0 to 4 mismatched records is flagged even though 4 is a small number.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from truesync.config import QualityConfig
from truesync.quality.checks import WARN, found_in_target, run_checks, unique, with_found
from truesync.store import runs

POST_LOAD = "post_load"


def created_checks(target: str, created: list[str], found: pd.Series) -> list[dict[str, Any]]:
    """The records a run created are in the target, each exactly once; ``found``: the keys the target holds."""
    there = found_in_target("key", WARN, f"must be in target '{target}' once created")
    once = unique("key", WARN, "must match one target record, not several")
    stats = run_checks([there], with_found("key", pd.DataFrame({"key": created}), set(found)), "key").stats
    written = pd.DataFrame({"key": found[found.isin(created)].tolist()})
    return stats + run_checks([once], written, "key", first_position=1).stats


def parent_checks(
    children: pd.DataFrame, ref_field: str, parent: str, present: set[str], target: str, position: int
) -> list[dict[str, Any]]:
    """The children written name a parent present in the target; ``children`` has ``key`` and ``ref_field``."""
    check = found_in_target(ref_field, WARN, f"must name a {parent} present in target '{target}'")
    return run_checks([check], with_found(ref_field, children, present), "key", first_position=position).stats


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


def quiet_alert(flow: str, entity: str, counts: dict[str, int]) -> dict[str, Any]:
    """Quiet drift found by a compare: differences no change time showed, so no incremental run would find them."""
    found = ", ".join(f"{n} {klass}" for klass, n in counts.items())
    message = f"{flow}.{entity}: quiet drift that no change time showed: {found}"
    return _alert(entity, "quiet_drift", float(sum(counts.values())), 0.0, "quiet_drift", message)


def new_codes_alert(flow: str, entity: str, codes: list[dict[str, Any]]) -> dict[str, Any]:
    """Codes no code map knows: their records wait in the queue until someone adds the code (then reprocess)."""
    listed = "; ".join(
        f"{c['field']} '{c['code']}' ({c['records']} records, first seen {c['first_seen']:%Y-%m-%d %H:%M})"
        for c in codes
    )
    message = f"{flow}.{entity}: new codes, held until a code map knows them: {listed}"
    alert = _alert(entity, "new_codes", float(sum(c["records"] for c in codes)), 0.0, "new_codes", message)
    return {**alert, "codes": [{**c, "first_seen": c["first_seen"].isoformat()} for c in codes]}


def silence_alert(flow: str, entity: str, rule: Any, group: dict[str, Any]) -> dict[str, Any]:
    """A group (a terminal) whose newest record says a watched state, with nothing since for longer than allowed."""
    message = (
        f"{flow}.{entity}: {rule.by} '{group['grp']}' last reported {rule.field} '{group['value']}' at "
        f"{group['at']:%Y-%m-%d %H:%M} and nothing since (more than {rule.after} of silence)"
    )
    return {**_alert(entity, "silent", 1.0, 0.0, "silent", message), "group": group["grp"]}


def crash_alert(flow: str, entity: str, what: str, error: str) -> dict[str, Any]:
    """A check that crashed after loading (or the Data Docs build): reported, the run goes on."""
    where = f"{flow}.{entity}" if entity else flow
    return _alert(entity, what, 0.0, 0.0, "check_error", f"{where}: {what} could not run: {error}")


def _alert(entity: str, metric: str, value: float, limit: float, kind: str, message: str) -> dict[str, Any]:
    return {"entity": entity, "metric": metric, "value": round(value, 6), "limit": round(limit, 6), "kind": kind,
            "message": message}  # fmt: skip


def recent_reports(store: Any, flow: str, run_id: str, limit: int, kind: str = "sync") -> list[dict[str, Any]]:
    """Reports of the flow's previous real runs of ``kind`` (sync or compare) that finished, newest first.

    A compare counts every record, a sync run its window's: their shares do not compare.
    """
    previous = runs.latest(store, flow, limit + 20, finished=True)  # room for dry runs, which are left out
    reports = []
    for run in previous:
        if run["run_id"] == run_id or run["dry_run"] or run["kind"] != kind:
            continue
        report = json.loads(run["report"])
        if "entities" in report:
            reports.append(report)
    return reports[:limit]
