"""The run report: one row in the store and one JSON document per run.

The document schema is described in ``docs/run-report.md``. Finishing a run checks the
conservation law for every entity; a run whose numbers do not add up fails loudly.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from truesync.config import Config, check_columns
from truesync.connectors.errors import SystemUnavailable
from truesync.core.classify import REPORTED_CLASSES
from truesync.pipeline.extract import EntityJob
from truesync.pipeline.load import resolve_fixed_keyless
from truesync.reporting import html as report_html
from truesync.reporting.masking import mask
from truesync.store import Store, checks, runs, staging
from truesync.support.paths import state_dir

OUTCOMES = ("created", "updated", "unchanged", "quarantined")
STAGING_RUNS_KEPT = 30
DATA_DOCS_KEPT = 10  # a Data Docs site carries ~4 MB of GX's styles and fonts


class ConservationError(AssertionError):
    """extracted != created + updated + unchanged + quarantined for some entity."""


class QualityThresholdError(AssertionError):
    """A data-quality threshold of the flow was crossed: the run fails as a whole."""


def entity_report(counts: dict[str, Any]) -> dict[str, Any]:
    sync_seconds, load_seconds = float(counts.get("sync_seconds", 0.0)), float(counts.get("load_seconds", 0.0))
    outcomes = {o: int(counts.get(o, 0)) for o in OUTCOMES}
    return {
        "extracted": int(counts.get("extracted", 0)),
        "outcomes": outcomes,
        "classes": {c: int(counts.get(c, 0)) for c in REPORTED_CLASSES},
        "overdue": int(counts.get("overdue", 0)),
        "blocked_again": int(counts.get("blocked_again", 0)),
        "exceptions": {
            "opened": int(counts.get("exceptions_opened", 0)),
            "resolved": int(counts.get("exceptions_resolved", 0)),
        },
        "durations": {
            "extract_seconds": round(float(counts.get("extract_seconds", 0.0)), 3),
            "classify_seconds": round(sync_seconds - load_seconds, 3),
            "load_seconds": round(load_seconds, 3),
        },
        "conserved": int(counts.get("extracted", 0)) == sum(outcomes.values()),
    }


def report_path(flow: str, run_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    return state_dir() / "reports" / flow / f"{safe}.json"


def _data_quality(config: Config, store: Store, flow: str, run: dict[str, Any], entities: dict[str, Any]) -> dict:
    """Check statistics (masked), failed thresholds, alerts and the Data Docs site of a run.

    A post-load check or the Data Docs build that crashes is reported as an alert: the data
    is loaded already, and losing the run's report over a report would hide everything else.
    A system or store that is unreachable still fails the task, so Airflow retries it.
    """
    from truesync.quality import health  # GX takes seconds to import: not while a DAG file is parsed
    from truesync.quality.datadocs import build_site

    spec, crashes = config.flows[flow], []
    if not run["dry_run"] and all(r["conserved"] for r in entities.values()):
        for entity in entities:
            with _reported(crashes, entity, "post-load checks"):
                health.post_load_checks(EntityJob(config, store, flow, entity, run["run_id"]))
    summary = checks.summary(store, run["run_id"])
    for entity, items in summary.items():
        _mask_examples(config, flow, entity, items)
    history = health.recent_reports(store, flow, run["run_id"], spec.quality.history_runs)
    failed, alerts = health.assess(spec.quality, flow, entities, history)
    alerts += [
        health.post_load_alert(flow, entity, item)
        for entity, items in summary.items()
        for item in items
        if item["phase"] == health.POST_LOAD and not item["success"]
    ]
    docs, index = report_path(flow, run["run_id"]).with_suffix(".datadocs"), None
    with _reported(crashes, "", "Data Docs"):
        index = build_site(docs, flow, spec.source, run["run_id"], run["started_at"], summary)
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


def _prune_data_docs(directory: Path, keep: int) -> None:
    """Keep the Data Docs sites of a flow's ``keep`` newest runs; the JSON and HTML reports stay."""
    sites = sorted(directory.glob("*.datadocs"), key=lambda p: p.stat().st_mtime, reverse=True)
    for site in sites[keep:]:
        shutil.rmtree(site, ignore_errors=True)


def _mask_examples(config: Config, flow: str, entity: str, items: list[dict[str, Any]]) -> None:
    """Examples touching a personal field are masked before they reach the report or Data Docs."""
    if not config.flows[flow].quality.mask_pii:
        return
    fields = config.entities[entity].fields
    for item in items:
        columns = check_columns(item["column"], item.get("kwargs") or {})
        personal = [fields[c] for c in columns if c in fields and fields[c].personal]
        if not personal:
            continue
        fmt = personal[0].format if len(columns) == 1 else None  # several columns: mask the whole value
        for example in item["examples"]:
            example["value"] = mask(example["value"], fmt)


def finish_run(config: Config, store: Store, flow: str, run_id: str) -> dict[str, Any]:
    """Check conservation, commit the watermark (unless dry run), store and write the report."""
    run = runs.get(store, run_id)
    spec = config.flows[flow]
    if not run["dry_run"]:
        for entity in spec.entities:
            resolved = resolve_fixed_keyless(EntityJob(config, store, flow, entity, run_id))
            runs.record_counts(store, run_id, entity, "final", {"exceptions_resolved": resolved})
    counts = runs.entity_counts(store, run_id)
    entities = {e: entity_report(counts.get(e, {})) for e in config.load_order(spec.entities)}
    broken = [e for e, r in entities.items() if not r["conserved"]]
    quality = _data_quality(config, store, flow, run, entities)
    fails_on_alerts = spec.quality.fail_on_alert and quality["alerts"]
    report = {
        "run_id": run_id,
        "flow": flow,
        "source": spec.source,
        "target": spec.target,
        "dry_run": bool(run["dry_run"]),
        "status": "failed" if broken or quality["failed_thresholds"] or fails_on_alerts else "success",
        "window": {"start": run["window_start"].isoformat(), "end": run["window_end"].isoformat()},
        "started_at": run["started_at"].isoformat(),
        "entities": entities,
        "totals": {o: sum(r["outcomes"][o] for r in entities.values()) for o in OUTCOMES},
        "quality": quality,
    }
    report["totals"]["extracted"] = sum(r["extracted"] for r in entities.values())
    report["html"] = str(report_html.html_path(flow, run_id))
    if not broken and not run["dry_run"]:  # held records wait in the queue: the window is done either way
        report["watermark"] = runs.advance_watermark(store, flow, run["window_end"], run_id).isoformat()
    runs.finish(store, run_id, report["status"], report)
    path = report_path(flow, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    report["path"] = str(path)
    staging.purge_old_runs(store, flow, STAGING_RUNS_KEPT)
    _prune_data_docs(path.parent, DATA_DOCS_KEPT)
    report_html.render_run(config, store, report)  # failed runs get a page too
    report_html.render_index(store)
    if broken:
        raise ConservationError(f"run {run_id}: conservation law broken for {', '.join(broken)}: {entities}")
    if report["status"] == "failed":
        crossed = quality["failed_thresholds"] + ([a["message"] for a in quality["alerts"]] if fails_on_alerts else [])
        raise QualityThresholdError(f"run {run_id} failed its data-quality thresholds: " + "; ".join(crossed))
    return report


def fail_run(store: Store, run_id: str, reason: str) -> None:
    """Mark a run failed when one of its tasks failed for good."""
    runs.finish(store, run_id, "failed", {"run_id": run_id, "status": "failed", "reason": reason})
    report_html.render_index(store)
