"""The status board's rules (``reporting.board``) on runs written to a SQLite and a PostgreSQL store:
freshness against the SLA, the newest runs' counts and trend, dry runs left out, worst first.
"""

from __future__ import annotations

import time
from datetime import timedelta

from truesync.config import load_config
from truesync.reporting.board import FAILING, LATE, ON_TIME, board, freshness, sparkline
from truesync.store import Store, queue, runs
from truesync.store.core import utcnow

SHOP, ERP = "webshop_to_crm", "erp_to_stockctl"


def _run(store: Store, flow: str, run_id: str, status: str, counts: dict[str, int], dry_run: bool = False) -> None:
    now = utcnow()
    runs.begin(store, run_id, flow, now - timedelta(hours=1), now, dry_run)
    for entity in load_config().flows[flow].entities:
        runs.record_counts(store, run_id, entity, "final", counts)
    runs.finish(store, run_id, status, {"status": status, "quality": {"alerts": []}})
    time.sleep(0.01)  # distinct start times, as real runs have


def test_states_counts_and_order_follow_the_rules(store: Store) -> None:
    config = load_config()
    _run(store, SHOP, "shop-1", "success", {"in_sync": 5, "missing": 1})
    _run(store, SHOP, "shop-2", "success", {"in_sync": 7, "delayed": 2})
    runs.advance_watermark(store, SHOP, utcnow() - timedelta(hours=1), "shop-2")
    _run(store, SHOP, "shop-3", "success", {"in_sync": 99}, dry_run=True)
    _run(store, ERP, "erp-1", "success", {"in_sync": 3})
    runs.advance_watermark(store, ERP, utcnow(), "erp-1")
    _run(store, ERP, "erp-2", "failed", {"invalid": 1})
    queue.quarantine(store, SHOP, "order", "shop-2", [{"key": "O1", "class": "invalid", "check_name": "c",
                                                      "field": "f", "reason": "r", "payload": "{}"}])  # fmt: skip

    rows = board(config, store, {SHOP, ERP}.__contains__)
    assert [(r["flow"], r["entity"], r["state"]) for r in rows] == [
        (ERP, "stock_item", FAILING),
        (SHOP, "order", ON_TIME),  # an open exception puts it first among equals
        (SHOP, "customer", ON_TIME),
    ]
    shop_order = rows[1]
    assert shop_order["classes"]["in_sync"] == 7 and shop_order["classes"]["delayed"] == 2, "the newest real run"
    assert shop_order["last_run"]["run_id"] == "shop-2", "a dry run commits nothing and is not the last run"
    assert shop_order["open_exceptions"] == 1 and shop_order["lag"] == "1h"
    assert shop_order["trend"]["runs"] == 2 and {line["class"] for line in shop_order["trend"]["lines"]} == {
        "in_sync",
        "missing",
        "delayed",
    }
    assert rows[0]["last_run"]["status"] == "failed" and rows[0]["classes"]["invalid"] == 1
    assert (
        board(config, store, {ERP}.__contains__)[0]["flow"] == ERP
        and len(board(config, store, {ERP}.__contains__)) == 1
    )
    assert board(config, store, lambda _: False) == []


def test_freshness_against_the_sla() -> None:
    now, sla = utcnow(), timedelta(hours=6)
    assert freshness(None, None, sla, now)[0] == LATE
    assert freshness(None, now - timedelta(hours=7), sla, now) == (LATE, "behind by more than the SLA of 6h")
    assert freshness(None, now - timedelta(hours=5), sla, now)[0] == ON_TIME
    assert freshness({"status": "failed", "started_at": now}, now, sla, now)[0] == FAILING
    assert freshness({"status": "running", "started_at": now}, now - timedelta(days=2), sla, now)[0] == LATE
    line = sparkline([{"in_sync": 4}, {"in_sync": 2, "missing": 2}])
    assert [x["class"] for x in line["lines"]] == ["in_sync", "missing"] and line["title"] == "in_sync 2; missing 2"
    assert sparkline([])["title"] == "no runs yet"
