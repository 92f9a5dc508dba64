"""Finalize: the last task of a run, after every entity is loaded. Named steps, in this order:

1. ``resolve_vanished_keyless``: exceptions of rows without a key that this run no longer
   saw are resolved (the row got its key, and was synced under it).
2. ``post_load_checks``: the target is read back by the keys the run wrote: every created
   record is there exactly once, every synced child finds its parent.
3. ``judge_quality``: data-quality thresholds (which fail the run) and alerts (which report),
   with the check statistics and a Data Docs site.
4. ``advance_watermark``: only when every entity's numbers add up (conservation) and an
   incremental run wrote (not a dry run, a compare or a reprocess). Held records wait in the
   queue: the window is done either way, so a threshold failure still moves the watermark
   (``docs/design.md``, "Decisions"). The files the run read count as read from then on
   (``store.files``).
5. ``purge``: the run's staged records, once its numbers add up; the per-record results and
   Data Docs of runs beyond the flow's ``retention`` (``docs/operating.md``, "What the store keeps").
6. ``publish``: the JSON report, the HTML page and the index; then a broken conservation
   law or a crossed threshold fails the task.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from sqlalchemy.exc import OperationalError

from truesync.config import Config, RetentionConfig
from truesync.connectors.errors import SystemUnavailable
from truesync.core.canonical import raw_keys, to_canonical
from truesync.pipeline import progress
from truesync.pipeline.extract import NULL_KEY_PREFIX
from truesync.pipeline.job import EntityJob
from truesync.quality import health
from truesync.quality.datadocs import build_site
from truesync.reporting import html
from truesync.reporting.masking import mask_examples, mask_field_reason
from truesync.reporting.report import (
    entity_report,
    report_path,
    reports_dir,
    run_document,
    write_plan,
    write_report,
)
from truesync.store import Store, checks, files, last_seen, queue, review, runs, staging
from truesync.store import compare as compared
from truesync.store import retention as kept
from truesync.support.collector import setup_frozen
from truesync.support.failpoints import failpoint

QUIET_EXAMPLES = 5  # per entity and class of quiet drift in a compare's report


class ConservationError(AssertionError):
    """extracted != created + updated + unchanged + quarantined for some entity (``docs/design.md``, "Conservation")."""


class QualityThresholdError(AssertionError):
    """A data-quality threshold of the flow was crossed: the run fails as a whole."""


@setup_frozen
def finish_run(config: Config, store: Store, flow: str, run_id: str) -> dict[str, Any]:
    """Run the steps of the module docstring; returns the report (with its ``path``)."""
    run, spec = runs.get(store, run_id), config.flows[flow]
    counts = runs.entity_counts(store, run_id)
    compare, incremental = run["kind"] == "compare", run["kind"] == "sync"
    names = [e for e in config.load_order(spec.entities) if incremental or e in counts]  # --entity picks some
    jobs = [EntityJob(config, store, flow, entity, run_id) for entity in names]
    progress.finalize_started(flow, run, [job.entity for job in jobs])
    if not run["dry_run"] and incremental:  # a compare or a reprocess stages no keyless rows
        for job in jobs:
            resolved = resolve_vanished_keyless(job)
            runs.record_counts(store, run_id, job.entity, "final", {"exceptions_resolved": resolved})
        counts = runs.entity_counts(store, run_id)
    entities = {job.entity: entity_report(counts.get(job.entity, {}), run["kind"]) for job in jobs}
    for job in jobs:
        if versions := job.code_versions():
            entities[job.entity]["code_versions"] = versions
    broken = [e for e, r in entities.items() if not r["conserved"]]
    quality = judge_quality(jobs, run, entities)
    drift = quiet_drift(config, store, flow, run) if compare else None
    if drift:
        quality["alerts"] += [health.quiet_alert(flow, entity, body["counts"]) for entity, body in drift.items()]
    fails_on_alerts = bool(spec.quality.fail_on_alert and quality["alerts"])
    failed = broken or quality["failed_thresholds"] or fails_on_alerts
    report = run_document(run, spec, entities, quality, "failed" if failed else "success")
    if compare:
        report["quiet_drift"] = drift
        if run["dry_run"]:
            report["plan"] = str(write_plan(store, report))
    report["html"] = str(html.html_path(flow, run_id))
    if not broken and not run["dry_run"] and incremental:
        report["watermark"] = runs.advance_watermark(store, flow, run["window_end"], run_id).isoformat()
        failpoint("finalize.watermark_moved", run_id)
        files.commit(store, flow, run_id)
    runs.finish(store, run_id, report["status"], report)
    report["path"] = str(write_report(report))
    purge(store, flow, run_id, spec.retention, conserved=not broken)
    publish(config, store, report)
    progress.finalize_finished(config, store, report)
    _raise_failures(run_id, entities, broken, quality, fails_on_alerts)
    return report


def quiet_drift(config: Config, store: Store, flow: str, run: dict[str, Any]) -> dict[str, Any]:
    """Per entity with quiet drift: its count per class and a few examples, reasons masked as on the run page."""
    drift = review.quiet_drift(store, run["run_id"], QUIET_EXAMPLES)
    mask = config.flows[flow].quality.mask_pii
    for entity, body in drift.items():
        for example in body["examples"]:
            value = example.pop("value")
            if mask:
                example["reason"] = mask_field_reason(config, entity, example["field"], example["reason"], value)
    return drift


def fail_run(store: Store, run_id: str, reason: str) -> None:
    """Mark a run failed when one of its tasks failed for good. A compare's scanned and doubted keys go,
    as when it finishes: a new run scans again, so they would only fill the store."""
    progress.run_failed(run_id, reason)
    runs.finish(store, run_id, "failed", {"run_id": run_id, "status": "failed", "reason": reason})
    compared.purge(store, run_id)
    html.render_index(store)


def resolve_vanished_keyless(job: EntityJob) -> int:
    """Resolve exceptions of rows without a key that this run no longer saw (they got one)."""
    seen = staging.keys_with_prefix(job.store, job.run_id, job.entity, NULL_KEY_PREFIX)
    return queue.resolve_vanished(job.store, job.flow, job.entity, job.run_id, NULL_KEY_PREFIX, seen)


def post_load_checks(job: EntityJob) -> None:
    """After loading: each created record is in the target exactly once, each synced child finds its parent.

    Both read the target by the keys the run wrote, one fetch per chunk, so they cost what
    the delta costs (a table-wide row count would cost what the table costs, and would count
    other writers too); an entity without references is read by its created keys alone.
    """
    checks.clear(job.store, job.run_id, job.entity, health.POST_LOAD)
    target = job.target()
    mapping = job.mapping("target").narrowed([job.spec.key, *job.spec.references])
    read = ("created", "updated") if job.spec.references else ("created",)
    size = job.config.flows[job.flow].chunk_size
    for outcomes in staging.written(job.store, job.run_id, job.entity, size, read):
        raw = target.fetch(mapping, list(outcomes))
        created = [key for key, outcome in outcomes.items() if outcome == "created"]
        stats = health.created_checks(target.name, created, raw_keys(raw, mapping))
        for position, (ref_field, parent) in enumerate(job.spec.references.items(), start=2):
            children = to_canonical(raw, mapping, job.spec, [job.spec.key, ref_field]).records
            frame = pd.DataFrame({"key": children[job.spec.key], ref_field: children[ref_field]}).dropna()
            parent_mapping = job.config.entity_mapping(job.config.flows[job.flow].target, parent).narrowed([])
            wanted = sorted(set(frame[ref_field]))
            present = set(raw_keys(target.fetch(parent_mapping, wanted), parent_mapping)) if wanted else set()
            stats += health.parent_checks(frame, ref_field, parent, present, target.name, position)
        checks.record(job.store, job.run_id, job.entity, health.POST_LOAD, stats)


def judge_quality(jobs: list[EntityJob], run: dict[str, Any], entities: dict[str, Any]) -> dict[str, Any]:
    """Check statistics (masked), failed thresholds, alerts and the Data Docs site of a run.

    A post-load check or the Data Docs build that crashes is reported as an alert: the data
    is loaded already, and losing the run's report over a report would hide everything else.
    A system or store that is unreachable still fails the task, so Airflow retries it.
    """
    config, store, flow, run_id = jobs[0].config, jobs[0].store, jobs[0].flow, run["run_id"]
    spec, crashes = config.flows[flow], []
    if not run["dry_run"] and all(r["conserved"] for r in entities.values()):
        for job in jobs:
            with _reported(crashes, job.entity, "post-load checks"):
                post_load_checks(job)
    summary = checks.summary(store, run_id)
    for entity, items in summary.items():
        mask_examples(config, flow, entity, items)
    history = health.recent_reports(store, flow, run_id, spec.quality.history_runs, run["kind"])
    failed, alerts = health.assess(spec.quality, flow, entities, history)
    alerts += [
        health.post_load_alert(flow, entity, item)
        for entity, items in summary.items()
        for item in items
        if item["phase"] == health.POST_LOAD and not item["success"]
    ]
    alerts += [
        health.new_codes_alert(flow, entity, codes) for entity, codes in review.new_codes(store, flow, run_id).items()
    ]
    if run["kind"] == "sync":
        alerts += [
            health.silence_alert(flow, entity, rule, group)
            for entity, rule in spec.quality.silence.items()
            for group in last_seen.silent(store, flow, entity, rule.values, run["window_end"] - rule.after)
        ]
    docs, index = report_path(flow, run_id).with_suffix(".datadocs"), None
    with _reported(crashes, "", "Data Docs"):
        index = build_site(docs, flow, spec.source, run_id, run["started_at"], summary)
    for item in (i for items in summary.values() for i in items):
        item.pop("kwargs", None)  # Data Docs needed them; the report names the rule instead
    return {
        "entities": {e: {"checks": summary.get(e, [])} for e in entities},
        "alerts": alerts + [health.crash_alert(flow, entity, what, error) for entity, what, error in crashes],
        "failed_thresholds": failed,
        "data_docs": str(index.relative_to(docs.parent)) if index else None,
    }


@contextmanager
def _reported(crashes: list[tuple[str, str, str]], entity: str, what: str) -> Iterator[None]:
    try:
        yield
    except (SystemUnavailable, OperationalError):
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure of a check is reported, not raised
        crashes.append((entity, what, f"{type(exc).__name__}: {exc}"))


def purge(store: Store, flow: str, run_id: str, retention: RetentionConfig, conserved: bool) -> None:
    """The run's staged records, when its numbers add up (a broken run keeps them to be examined,
    until it ages out); the per-run detail of the flow's runs beyond ``retention.results_runs``
    (``store.retention``); Data Docs sites beyond ``retention.data_docs_runs``.

    A run's counts, report and HTML page stay, as do the ledger, the queue and the audit trail.
    """
    if conserved:
        staging.drop_run(store, run_id)
    if old := runs.older_than(store, flow, retention.results_runs):
        kept.drop_detail(store, old)
    sites = sorted(reports_dir(flow).glob("*.datadocs"), key=lambda p: p.stat().st_mtime, reverse=True)
    for site in sites[retention.data_docs_runs :]:
        shutil.rmtree(site, ignore_errors=True)


def publish(config: Config, store: Store, report: dict[str, Any]) -> None:
    """The run's HTML page (failed runs get one too) and the index of all runs."""
    html.render_run(config, store, report)
    html.render_index(store)


def _raise_failures(
    run_id: str, entities: dict[str, Any], broken: list[str], quality: dict[str, Any], fails_on_alerts: bool
) -> None:
    if broken:
        raise ConservationError(f"run {run_id}: conservation law broken for {', '.join(broken)}: {entities}")
    crossed = quality["failed_thresholds"] + ([a["message"] for a in quality["alerts"]] if fails_on_alerts else [])
    if crossed:
        raise QualityThresholdError(f"run {run_id} failed its data-quality thresholds: " + "; ".join(crossed))
