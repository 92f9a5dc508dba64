"""The run report as a page people read: one static HTML file per run, and an index of all runs.

Pages are self-contained (inline CSS and SVG, no script, no font or file fetched from
anywhere) so they open from a file share, a mail attachment or a machine without internet.
Personal data in reasons is masked unless the flow's ``quality.mask_pii`` turns masking off.
Count cells carry ``data-*`` attributes so tests and scripts can read the numbers back.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from truesync.config import Config
from truesync.core.classify import REPORTED_CLASSES
from truesync.reporting.masking import mask_field_reason
from truesync.reporting.report import SUCCESS_WITH_ALERTS, classes_of, outcomes_of, report_path, status_label
from truesync.store import Store, review, runs
from truesync.support.paths import state_dir

TEMPLATES = Path(__file__).parent / "templates"
OVERDUE_SHOWN = 50
REASON_GROUPS_SHOWN = 20
EXAMPLES_PER_REASON = 5
TREND_RUNS = 10
INDEX_RUNS = 500
TREND_SHARES = ("mismatched", "overwritten", "overdue")
CLASS_COLOURS = {
    "in_sync": "#8fbf8f",
    "missing": "#5b8def",
    "delayed": "#f2b84b",
    "overwritten": "#d9534f",
    "mismatched": "#9b59b6",
    "invalid": "#555555",
    "deleted": "#7a4b2a",
    "target_only": "#2a9d8f",
}
SHARE_COLOURS = {
    "mismatched": CLASS_COLOURS["mismatched"],
    "overwritten": CLASS_COLOURS["overwritten"],
    "overdue": "#e67e22",
}

# A status badge's colour; the badge always carries the status in words too.
BADGES = {"success": "ok", SUCCESS_WITH_ALERTS: "warn", "running": "warn"}

Masker = Callable[[str, str | None, str | None, str | None], str | None]


def html_path(flow: str, run_id: str) -> Path:
    """The run's page, next to its JSON report."""
    return report_path(flow, run_id).with_suffix(".html")


def index_path() -> Path:
    return state_dir() / "reports" / "index.html"


def render_run(config: Config, store: Store, report: dict[str, Any]) -> Path:
    """Write the run's page from its report and its per-record results; returns the file."""
    path = html_path(report["flow"], report["run_id"])
    _write(path, _env().get_template("run.html").render(**run_context(config, store, report)))
    return path


def render_index(store: Store) -> Path:
    """Write the index of the newest runs of every flow, newest first; returns the file."""
    rows = [_index_row(run) for run in runs.latest(store, None, INDEX_RUNS)]
    path = index_path()
    _write(path, _env().get_template("index.html").render(runs=rows, limit=INDEX_RUNS))
    return path


def run_context(config: Config, store: Store, report: dict[str, Any]) -> dict[str, Any]:
    """Everything the run page shows; the store is read with bounded queries only."""
    run_id, entities, kind = report["run_id"], report.get("entities", {}), report.get("kind", "sync")
    trend = _trend(store, report)
    return {
        "report": report,
        "kind": kind,
        "classes": classes_of(kind),
        "outcomes": outcomes_of(kind),
        "colours": CLASS_COLOURS,
        "share_colours": SHARE_COLOURS,
        "chart": class_chart(entities, classes_of(kind)),
        "crosstab": _crosstab(store, run_id, entities, kind),
        "quiet_drift": report.get("quiet_drift") or {},
        "overdue": review.overdue_records(store, run_id, OVERDUE_SHOWN),
        "overdue_total": sum(body.get("overdue", 0) for body in entities.values()),
        "overdue_shown": OVERDUE_SHOWN,
        "reasons": _reasons(store, run_id, _masker(config, report["flow"])),
        "trend": trend,
        "trend_chart": trend_chart(trend),
        "quality": report.get("quality"),
        "label": status_label(report),
    }


def render_page(template: str, **context: Any) -> str:
    """A page of ``templates/`` (the dashboard's), rendered with the reports' filters."""
    return _env().get_template(template).render(**context)


@functools.cache
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    env.filters["pct"] = lambda share: "–" if share is None else f"{100 * share:.1f} %"
    env.filters["num"] = lambda n: "–" if n is None else f"{n:,}"
    env.filters["badge"] = lambda label: BADGES.get(label, "bad")
    env.filters["segment"] = lambda text: quote(str(text), safe="")  # one URL path segment, '/' and '..' included
    return env


def _write(path: Path, text: str) -> None:
    """Replace the file atomically, so a page served while a run finishes is never half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _crosstab(store: Store, run_id: str, entities: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Rows entity x class with a count per outcome, for classes that have records."""
    counts = review.class_outcomes(store, run_id)
    rows = []
    for entity, body in entities.items():
        for klass in classes_of(kind):
            if body["classes"].get(klass):
                cells = {o: counts.get((entity, klass, o), 0) for o in outcomes_of(kind)}
                rows.append({"entity": entity, "class": klass, "cells": cells, "total": body["classes"][klass]})
    return rows


def _masker(config: Config, flow: str) -> Masker:
    """A function masking the offending value in a reason when its field holds personal data."""
    if not config.flows[flow].quality.mask_pii:
        return lambda entity, field, reason, value: reason
    return functools.partial(mask_field_reason, config)


def _reasons(store: Store, run_id: str, masker: Masker) -> list[dict[str, Any]]:
    """Reason groups ranked by count, each with a few masked examples."""
    groups = review.reason_groups(store, run_id, REASON_GROUPS_SHOWN)
    for group in groups:
        found = review.reason_examples(
            store, run_id, group["entity"], group["check_name"], group["field"], EXAMPLES_PER_REASON
        )
        group["examples"] = [
            {"key": ex["key"], "reason": masker(group["entity"], group["field"], ex["reason"], ex["value"])}
            for ex in found
        ]
    return groups


def trend_point(run_id: str, report: dict[str, Any], started_at: str, current: bool = False) -> dict[str, Any]:
    """One run in the trend: records extracted and quarantined, and the shares of the quiet problems."""
    entities = report.get("entities") or {}
    extracted = sum(body["extracted"] for body in entities.values()) if entities else None
    point = {
        "run_id": run_id,
        "started_at": started_at[:19].replace("T", " "),
        "status": report.get("status"),
        "label": status_label(report),
        "dry_run": bool(report.get("dry_run")),
        "current": current,
        "extracted": extracted,
        "quarantined": sum(body["outcomes"]["quarantined"] for body in entities.values()) if entities else None,
    }
    for name in TREND_SHARES:
        n = sum(body.get(name, 0) if name == "overdue" else body["classes"][name] for body in entities.values())
        point[name] = n / extracted if extracted else None
    return point


def _trend(store: Store, report: dict[str, Any]) -> list[dict[str, Any]]:
    """This run and up to ``TREND_RUNS`` runs of the flow of the same kind (sync or compare) before it, oldest first."""
    started = datetime.fromisoformat(report["started_at"])
    earlier = review.runs_before(store, report["flow"], started, TREND_RUNS, report.get("kind", "sync"))
    points = [
        trend_point(r["run_id"], json.loads(r["report"]) if r["report"] else {"status": r["status"]}, _iso(r))
        for r in reversed(earlier)
    ]
    return [*points, trend_point(report["run_id"], report, report["started_at"], current=True)]


def _iso(run: dict[str, Any]) -> str:
    return run["started_at"].isoformat(sep=" ", timespec="seconds")


def class_chart(
    entities: dict[str, Any],
    classes: tuple[str, ...] = REPORTED_CLASSES,
    width: int = 640,
    bar: int = 26,
    label: int = 110,
) -> dict[str, Any]:
    """Geometry of a 100 % stacked bar per entity, one segment per class, for an inline SVG."""
    span = width - label - 70
    rows = []
    for i, (entity, body) in enumerate(entities.items()):
        total, x, segments = body["extracted"], float(label), []
        for klass in classes:
            n = body["classes"].get(klass, 0)
            if n and total:
                w = span * n / total
                segments.append({"class": klass, "n": n, "x": round(x, 2), "w": round(w, 2)})
                x += w
        rows.append({"entity": entity, "y": 10 + i * (bar + 12), "total": total, "segments": segments})
    return {
        "width": width,
        "height": 20 + len(rows) * (bar + 12),
        "bar": bar,
        "label": label,
        "span": span,
        "rows": rows,
    }


def trend_chart(points: list[dict[str, Any]], width: int = 640, height: int = 140) -> dict[str, Any]:
    """Geometry of the trend: bars of records extracted (quarantined part on top) and a line per share."""
    left, top, plot_h = 40, 10, height - 30
    step = (width - left - 10) / max(len(points), 1)
    most = max((p["extracted"] or 0 for p in points), default=0) or 1
    top_share = max([0.05, *(p[s] for p in points for s in TREND_SHARES if p[s] is not None)])
    bars, lines = [], {s: [] for s in TREND_SHARES}
    for i, p in enumerate(points):
        x = left + i * step
        if p["extracted"] is not None:
            h = plot_h * p["extracted"] / most
            q = plot_h * (p["quarantined"] or 0) / most
            bars.append({"x": round(x + step * 0.2, 2), "w": round(step * 0.6, 2), "y": round(top + plot_h - h, 2),
                         "h": round(h, 2), "qh": round(q, 2), "point": p})  # fmt: skip
        for s in TREND_SHARES:
            if p[s] is not None:
                lines[s].append((round(x + step / 2, 1), round(top + plot_h - plot_h * p[s] / top_share, 1)))
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "lines": lines,
        "most": most,
        "top_share": top_share,
        "left": left,
        "base": top + plot_h,
    }


def _index_row(run: dict[str, Any]) -> dict[str, Any]:
    """One run's health at a glance: status, conservation, quarantined, alerts, dry run, link."""
    report = json.loads(run["report"]) if run["report"] else {}
    entities = report.get("entities") or {}
    page = html_path(run["flow"], run["run_id"])
    return {
        "run_id": run["run_id"],
        "flow": run["flow"],
        "kind": run["kind"],
        "status": run["status"],
        "label": status_label(report, run["status"]),
        "dry_run": bool(run["dry_run"]),
        "started_at": _iso(run),
        "window": report.get("window"),
        "conserved": all(body["conserved"] for body in entities.values()) if entities else None,
        "extracted": report.get("totals", {}).get("extracted"),
        "quarantined": report.get("totals", {}).get("quarantined"),
        "alerts": len((report.get("quality") or {}).get("alerts", [])),
        "reason": report.get("reason"),
        "href": f"{page.parent.name}/{page.name}" if page.exists() else None,
    }
