"""Per-run statistics of the data-quality checks: one row per check and chunk, summed for reports."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, func, select

from truesync.store.core import Store
from truesync.store.schema import checks

EXAMPLES_SHOWN = 5


def record(store: Store, run_id: str, entity: str, phase: str, stats: list[dict[str, Any]]) -> None:
    """Keep one chunk's check statistics; examples are bounded by the checks themselves."""
    if not stats:
        return
    rows = [
        {"run_id": run_id, "entity": entity, "phase": phase, **s,
         "examples": json.dumps(s["examples"]), "kwargs": json.dumps(s["kwargs"], default=str)}
        for s in stats
    ]  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(checks.insert(), rows)


def clear(store: Store, run_id: str, entity: str, phase: str) -> None:
    """Forget a phase's statistics, so a retried task does not count its chunks twice."""
    with store.engine.begin() as conn:
        conn.execute(
            delete(checks).where(checks.c.run_id == run_id, checks.c.entity == entity, checks.c.phase == phase)
        )


def summary(store: Store, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """Entity -> its checks in suite order, with counts summed over chunks, a few examples, GX arguments."""
    group = (checks.c.entity, checks.c.phase, checks.c.position, checks.c.expectation, checks.c.column_name,
             checks.c.severity, checks.c.rule)  # fmt: skip
    totals = (
        select(*group, func.sum(checks.c.evaluated).label("evaluated"), func.sum(checks.c.unexpected).label("failed"))
        .where(checks.c.run_id == run_id)
        .group_by(*group)
        .order_by(checks.c.entity, checks.c.phase, checks.c.position)
    )
    details = (
        select(*(checks.c[c] for c in ("entity", "phase", "position", "examples", "error", "observed", "kwargs")))
        .where(checks.c.run_id == run_id)
        .order_by(checks.c.id)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(totals).mappings().all()
        extra = conn.execute(details).mappings().all()
    out: dict[str, list[dict[str, Any]]] = {}
    index: dict[tuple[str, str, int], dict[str, Any]] = {}
    for row in rows:
        item = {
            "position": row["position"],
            "expectation": row["expectation"],
            "column": row["column_name"],
            "severity": row["severity"],
            "phase": row["phase"],
            "rule": row["rule"],
            "evaluated": int(row["evaluated"]),
            "unexpected": int(row["failed"]),
            "examples": [],
            "error": None,
            "observed": None,
            "kwargs": None,
        }
        out.setdefault(row["entity"], []).append(item)
        index[(row["entity"], row["phase"], row["position"])] = item
    for row in extra:
        item = index[(row["entity"], row["phase"], row["position"])]
        item["examples"] = (item["examples"] + json.loads(row["examples"]))[:EXAMPLES_SHOWN]
        item["error"] = item["error"] or row["error"]
        item["observed"] = item["observed"] or row["observed"]
        item["kwargs"] = item["kwargs"] or json.loads(row["kwargs"])
    for items in out.values():
        for item in items:
            item["success"] = item["unexpected"] == 0 and item["error"] is None and item["observed"] is None
    return out
