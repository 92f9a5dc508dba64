"""The status board: one row per flow × entity, worst first (``docs/operating.md``, "The dashboard").

Rules:

* **Freshness** against the flow's ``freshness_sla``: ``failing`` when the flow's newest
  finished incremental run failed (a run still going does not hide it); else ``late`` when no
  successful run committed a window ending within the last SLA period (the watermark is older
  than now − SLA, or there is none); else ``on time``.
  Dry runs commit nothing and are left out.
* **Counts** are the entity's classes in the newest finished incremental run; the **trend** is
  the same classes over the ``TREND_RUNS`` newest finished runs, oldest first.
* **Quiet drift** is the entity's count of quiet differences in the newest finished full compare.
* **Order**: failing, then late, then on time; within each, more open exceptions, then more
  alerts, first; then flow and entity by name. Each state is shown in words as well as colour.
* A row is shown only for flows the caller may see (``visible``): the board never tells one
  team about another's flows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from truesync.config import Config
from truesync.core.classify import REPORTED_CLASSES
from truesync.reporting.html import CLASS_COLOURS, html_path
from truesync.reporting.report import status_label
from truesync.store import Store, status
from truesync.store.core import utcnow

ON_TIME, LATE, FAILING = "on time", "late", "failing"
SEVERITY = {FAILING: 0, LATE: 1, ON_TIME: 2}
BADGE = {FAILING: "bad", LATE: "warn", ON_TIME: "ok"}
TREND_RUNS = 10
SPARK_WIDTH, SPARK_HEIGHT = 120, 28


def board(config: Config, store: Store, visible: Callable[[str], bool], now: datetime | None = None) -> list[dict]:
    """Every visible flow × entity row, worst first."""
    now = now or utcnow()
    flows = [f for f in config.flows if visible(f)]
    syncs = status.newest_runs(store, flows, TREND_RUNS + 1, "sync")
    compares = status.newest_runs(store, flows, 1, "compare")
    finished = {f: [r for r in runs if r["status"] != "running"] for f, runs in syncs.items()}
    wanted = [r["run_id"] for runs in finished.values() for r in runs[:TREND_RUNS]]
    counts = status.run_entity_counts(store, wanted + [r["run_id"] for runs in compares.values() for r in runs])
    reports = status.reports(store, [runs[0]["run_id"] for runs in finished.values() if runs])
    watermarks, queued = status.committed(store), status.open_exceptions(store)
    rows = []
    for flow in flows:
        spec = config.flows[flow]
        last = finished[flow][0] if finished[flow] else None
        state, why = freshness(last, watermarks.get(flow), spec.freshness_sla, now)
        report = reports.get(last["run_id"]) if last else None
        compare = next((r for r in compares[flow] if r["status"] != "running"), None)
        for entity in config.load_order(spec.entities):
            history = [counts.get((r["run_id"], entity)) for r in reversed(finished[flow][:TREND_RUNS])]
            rows.append(
                {
                    "flow": flow,
                    "entity": entity,
                    "source": spec.source,
                    "target": spec.target,
                    "state": state,
                    "state_reason": why,
                    "badge": BADGE[state],
                    "last_run": _run_summary(syncs[flow][0] if syncs[flow] else None, report),
                    "watermark": watermarks.get(flow),
                    "lag": _lag(now, watermarks.get(flow)),
                    "classes": counts.get((last["run_id"], entity)) if last else None,
                    "trend": sparkline([h for h in history if h is not None]),
                    "open_exceptions": queued.get((flow, entity), 0),
                    "alerts": [a["message"] for a in _alerts(report) if a.get("entity") == entity],
                    "quiet": _quiet(compare, counts.get((compare["run_id"], entity)) if compare else None),
                    "report": _page(flow, last["run_id"]) if last else None,
                }
            )
    return sorted(rows, key=_worst_first)


def freshness(
    newest: dict[str, Any] | None, watermark: datetime | None, sla: timedelta, now: datetime
) -> tuple[str, str]:
    """The flow's state by the rules of the module docstring, and why, in words."""
    if newest is not None and newest["status"] == "failed":
        return FAILING, f"newest run failed, {newest['started_at']:%Y-%m-%d %H:%M}"
    if watermark is None:
        return LATE, "nothing committed yet"
    if watermark < now - sla:
        return LATE, f"behind by more than the SLA of {_span(sla)}"
    return ON_TIME, f"within the SLA of {_span(sla)}"


def sparkline(history: list[dict[str, int]]) -> dict[str, Any]:
    """Geometry of a small inline SVG: one polyline per class that occurred, scaled to the largest count."""
    top = max([1, *(h.get(c, 0) for h in history for c in REPORTED_CLASSES)])
    step = SPARK_WIDTH / max(len(history) - 1, 1)
    lines = []
    for klass in REPORTED_CLASSES:
        values = [h.get(klass, 0) for h in history]
        if not any(values):
            continue
        points = " ".join(
            f"{round(i * step, 1)},{round(SPARK_HEIGHT - 2 - (SPARK_HEIGHT - 4) * v / top, 1)}"
            for i, v in enumerate(values)
        )
        end = points.rsplit(" ", 1)[-1].split(",")
        lines.append({"class": klass, "colour": CLASS_COLOURS[klass], "points": points, "last": values[-1],
                      "x": end[0], "y": end[1]})  # fmt: skip
    title = "; ".join(f"{line['class']} {line['last']}" for line in lines) or "no runs yet"
    return {"width": SPARK_WIDTH, "height": SPARK_HEIGHT, "lines": lines, "runs": len(history), "title": title}


def _worst_first(row: dict[str, Any]) -> tuple:
    return (SEVERITY[row["state"]], -row["open_exceptions"], -len(row["alerts"]), row["flow"], row["entity"])


def _run_summary(run: dict[str, Any] | None, report: dict[str, Any] | None) -> dict[str, Any] | None:
    if run is None:
        return None
    label = status_label(report, run["status"])  # the report's alerts count only for a success
    return {"run_id": run["run_id"], "status": run["status"], "label": label, "started_at": run["started_at"]}


def _alerts(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    return ((report or {}).get("quality") or {}).get("alerts") or []


def _quiet(compare: dict[str, Any] | None, counts: dict[str, int] | None) -> dict[str, Any] | None:
    if compare is None or counts is None:
        return None
    return {"count": counts.get("quiet", 0), "run_id": compare["run_id"], "at": compare["started_at"]}


def _page(flow: str, run_id: str) -> str:
    """The run page's path below the reports folder (``/truesync/reports/<this>``)."""
    return f"{flow}/{html_path(flow, run_id).name}"


def _lag(now: datetime, watermark: datetime | None) -> str | None:
    return None if watermark is None else _span(now - watermark)


def _span(delta: timedelta) -> str:
    """A duration in the largest two units people read at a glance: ``3d 4h``, ``5h 10m``, ``45m``."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {mins}m" if mins else f"{hours}h"
    return f"{mins}m"
