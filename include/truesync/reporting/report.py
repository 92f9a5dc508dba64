"""The run report: one JSON document per run, its numbers per entity and where it is kept.

The document schema is described in ``docs/run-report.md``. ``pipeline.finalize`` builds
it when a run ends; the HTML page (``reporting.html``) is rendered from it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from truesync.config import FlowConfig
from truesync.core.classify import REPORTED_CLASSES
from truesync.core.compare import COMPARE_CLASSES
from truesync.support.paths import state_dir

OUTCOMES = ("created", "updated", "unchanged", "quarantined")
COMPARE_OUTCOMES = ("removed", "soft_deleted", "reported")  # what a compare does to records only the target has
SUCCESS_WITH_ALERTS = "success with alerts"


def status_label(report: dict[str, Any] | None, status: str | None = None) -> str:
    """The run's status as people read it: ``success with alerts`` for a successful run that raised alerts.

    ``status`` (the report's, or the store's for a run without a report yet) stays ``success``,
    ``failed`` or ``running`` for programs: exit codes, Airflow, scripts. Pages and listings
    show this label, in words beside the badge's colour (``docs/run-report.md``).
    """
    status = status or (report or {}).get("status") or "unknown"
    alerts = ((report or {}).get("quality") or {}).get("alerts")
    return SUCCESS_WITH_ALERTS if status == "success" and alerts else status


def outcomes_of(kind: str) -> tuple[str, ...]:
    """The outcomes a run of ``kind`` (sync or compare) reports: the right-hand side of its conservation law."""
    return OUTCOMES + COMPARE_OUTCOMES if kind == "compare" else OUTCOMES


def classes_of(kind: str) -> tuple[str, ...]:
    """The classes a run of ``kind`` reports."""
    return REPORTED_CLASSES + COMPARE_CLASSES if kind == "compare" else REPORTED_CLASSES


def entity_report(counts: dict[str, Any], kind: str = "sync") -> dict[str, Any]:
    """One entity's numbers from its summed counts; ``conserved`` checks the conservation law."""
    sync_seconds, load_seconds = float(counts.get("sync_seconds", 0.0)), float(counts.get("load_seconds", 0.0))
    outcomes = {o: int(counts.get(o, 0)) for o in outcomes_of(kind)}
    body = {
        "extracted": int(counts.get("extracted", 0)),
        "outcomes": outcomes,
        "classes": {c: int(counts.get(c, 0)) for c in classes_of(kind)},
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
    if kind == "compare":
        body["quiet"] = int(counts.get("quiet", 0))
    return body


def run_document(
    run: dict[str, Any], spec: FlowConfig, entities: dict[str, Any], quality: dict[str, Any], status: str
) -> dict[str, Any]:
    """The report of a finished run: window, entities, totals over them, data quality."""
    totals = {o: sum(r["outcomes"][o] for r in entities.values()) for o in outcomes_of(run["kind"])}
    totals["extracted"] = sum(r["extracted"] for r in entities.values())
    return {
        "run_id": run["run_id"],
        "kind": run["kind"],
        "flow": run["flow"],
        "source": spec.source,
        "target": spec.target,
        "dry_run": bool(run["dry_run"]),
        "status": status,
        "status_label": status_label({"status": status, "quality": quality}),
        "window": {"start": run["window_start"].isoformat(), "end": run["window_end"].isoformat()},
        "started_at": run["started_at"].isoformat(),
        "entities": entities,
        "totals": totals,
        "quality": quality,
    }


def reports_dir(flow: str) -> Path:
    """``state/reports/<flow>``: the flow's JSON reports, HTML pages and Data Docs sites."""
    return state_dir() / "reports" / flow


def report_path(flow: str, run_id: str) -> Path:
    """``state/reports/<flow>/<run id>.json``, the run id made safe as a file name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    return reports_dir(flow) / f"{safe}.json"


def write_report(report: dict[str, Any]) -> Path:
    """Write the JSON document beside the flow's other reports; returns its path."""
    path = report_path(report["flow"], report["run_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path
