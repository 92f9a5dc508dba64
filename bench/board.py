"""The dashboard at scale (issue #12): the status board and a page of the exception queue, each read
from the store and rendered to HTML, with 50 flows × 5 entities and 100,000 open exceptions.

    python bench/board.py [--flows 50] [--entities 5] [--exceptions 100000] [--runs 11]
                          [--server postgresql+psycopg2://postgres@127.0.0.1:5432/postgres] [--json F]

For each store (a SQLite file, and a fresh PostgreSQL database on ``--server``) it fills the store's
own tables as that many flows would have left them: per flow ``--runs`` finished incremental runs
(with their per-entity counts and a report raising alerts) and a full compare, a watermark, and
``--exceptions`` open exceptions spread over every flow × entity. It then times, five times each
after a first warm-up, what the dashboard's routes do: ``reporting.board.board`` plus rendering
``dashboard_board.html``; ``store.triage.page`` (the first page of 50 and the count) plus
rendering ``dashboard_queue.html``; and the queue filtered by one flow and a key part. The
authorisation checks of the plugin (one call of the auth manager per flow) are not included.
Aim: each page under 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from truesync.config import Config, load_config
from truesync.pipeline.dags import dag_id
from truesync.reporting.board import board
from truesync.reporting.html import CLASS_COLOURS, render_page
from truesync.store import Store, queue, triage
from truesync.store.schema import COUNT_COLUMNS, exceptions, run_entities, runs, watermarks
from truesync.support.bulk import insert

NOW = datetime(2026, 12, 1, 12, 0)
REPEATS = 5
FILTERS = dict.fromkeys(("flow", "entity", "class", "check", "status", "older_than_days", "key"), "")


def scaled_config(flows: int, entities: int) -> Config:
    """The sandbox's configuration with ``flows`` copies of ``webshop_to_crm``, each over ``entities`` entities."""
    config = load_config()
    names = [f"entity_{i}" for i in range(entities)]
    model = config.entities["customer"]
    flow = config.flows["webshop_to_crm"]
    return config.model_copy(
        update={
            "entities": {**config.entities, **{n: model for n in names}},
            "flows": {f"flow_{i:02d}": flow.model_copy(update={"entities": names}) for i in range(flows)},
        }
    )


def fill(store: Store, config: Config, runs_per_flow: int, open_exceptions: int) -> None:
    """The store's tables as ``config``'s flows would have left them."""
    run_rows, entity_rows, mark_rows = [], [], []
    alerts = [{"entity": "entity_0", "metric": "overdue", "value": 0.2, "limit": 0.1, "kind": "threshold",
               "message": "overdue is 20.0% (40 records), above the limit of 10.0%"}]  # fmt: skip
    for f, flow in enumerate(config.flows):
        for n in range(runs_per_flow + 1):
            kind = "compare" if n == runs_per_flow else "sync"
            run_id = f"{flow}:{kind}{n}"
            started = NOW - timedelta(days=runs_per_flow - n, minutes=f)
            report = {"status": "success", "quality": {"alerts": alerts if n == runs_per_flow - 1 else []}}
            run_rows.append({"run_id": run_id, "flow": flow, "window_start": started - timedelta(days=1),
                             "window_end": started, "status": "failed" if f % 7 == 0 and n == runs_per_flow - 1
                             else "success", "dry_run": False, "kind": kind, "started_at": started,
                             "finished_at": started + timedelta(minutes=3), "report": json.dumps(report)})  # fmt: skip
            for e, entity in enumerate(config.flows[flow].entities):
                counts = {c: (n * 7 + e * 3 + len(c)) % 50 for c in COUNT_COLUMNS}
                entity_rows.append({"run_id": run_id, "entity": entity, "part": "final", **counts,
                                    "extract_seconds": 1.0, "sync_seconds": 1.0, "load_seconds": 0.5})  # fmt: skip
        mark_rows.append({"flow": flow, "committed_until": NOW - timedelta(hours=f % 12), "run_id": run_id,
                          "updated_at": NOW})  # fmt: skip
    pairs = [(flow, entity) for flow in config.flows for entity in config.flows[flow].entities]
    queued = [{"flow": pairs[i % len(pairs)][0], "entity": pairs[i % len(pairs)][1], "key": f"K{i:08d}",
               "class": "invalid", "check_name": "expect_column_values_to_match_regex", "field": "email",
               "reason": "field 'email' must be an email address; found 'x'", "payload": json.dumps({"email": "x"}),
               "first_seen": NOW - timedelta(minutes=i), "last_seen": NOW - timedelta(seconds=i), "attempts": 1,
               "status": queue.ACTIVE[i % 2], "run_id": "seed"} for i in range(open_exceptions)]  # fmt: skip
    with store.engine.begin() as conn:
        for table, rows in (
            (runs, run_rows),
            (run_entities, entity_rows),
            (watermarks, mark_rows),
            (exceptions, queued),
        ):
            for start in range(0, len(rows), 20_000):
                insert(conn, table, rows[start : start + 20_000])
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def page_context(rows: Any) -> dict[str, Any]:
    """What the plugin hands every page besides its own content."""
    return {"root": "/truesync/dashboard", "reports": "/truesync/reports", "ui": "", "user": "bench",
            "csrf": "0" * 64, "csrf_field": "csrf", "done": None, "colours": CLASS_COLOURS, **rows}  # fmt: skip


def timed(step: Callable[[], int]) -> dict[str, Any]:
    """Seconds of ``REPEATS`` calls after a warm-up, and the size of what the last one rendered."""
    step()
    seconds, size = [], 0
    for _ in range(REPEATS):
        began = time.perf_counter()
        size = step()
        seconds.append(time.perf_counter() - began)
    return {"median_s": round(statistics.median(seconds), 4), "max_s": round(max(seconds), 4), "html_bytes": size}


def measure(store: Store, config: Config) -> dict[str, Any]:
    flows = tuple(config.flows)
    everything = triage.Selection(flows=flows)
    one_flow = triage.Selection(flows=flows, flow=flows[-1], key="K0000")

    def board_page() -> int:
        rows = [{**row, "dag_id": dag_id(row["flow"])} for row in board(config, store, lambda _: True, NOW)]
        return len(render_page("dashboard_board.html", **page_context({"rows": rows, "editable": set(flows)})))

    def queue_page(selection: triage.Selection) -> Callable[[], int]:
        def step() -> int:
            rows, total = triage.page(store, selection, 0, 50)
            html = render_page("dashboard_queue.html", **page_context({
                "rows": rows, "total": total, "page": 1, "pages": -(-total // 50), "filters": FILTERS,
                "query": lambda **_: "", "flows": flows, "entities": sorted(config.entities),
                "statuses": queue.STATUSES, "actions": triage.ACTIONS, "editable": set(flows)}))  # fmt: skip
            return len(html)

        return step

    return {
        "board": timed(board_page),
        "queue, first page of everything": timed(queue_page(everything)),
        "queue, one flow and a key part": timed(queue_page(one_flow)),
    }


def stores(server: str, work: Path) -> list[tuple[str, URL, Callable[[], None]]]:
    """(name, store URL, cleanup) for a SQLite file and a fresh PostgreSQL database."""
    admin = make_url(server)
    name = f"ts_bench_board_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return [
        ("sqlite", make_url(f"sqlite:///{work / 'store.db'}"), lambda: None),
        ("postgresql", admin.set(database=name), drop),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=50)
    parser.add_argument("--entities", type=int, default=5)
    parser.add_argument("--exceptions", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=11, help="finished incremental runs per flow")
    parser.add_argument("--server", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", help="write the figures to this file as well")
    args = parser.parse_args(argv)
    config = scaled_config(args.flows, args.entities)
    results: dict[str, Any] = {"flows": args.flows, "entities": args.entities, "exceptions": args.exceptions}
    with tempfile.TemporaryDirectory() as work:
        for name, url, cleanup in stores(args.server, Path(work)):
            try:
                store = Store(url)
                began = time.perf_counter()
                fill(store, config, args.runs, args.exceptions)
                print(f"{name}: filled in {time.perf_counter() - began:.1f} s", flush=True)
                results[name] = measure(store, config)
                store.engine.dispose()
            finally:
                cleanup()
    print(f"{'store':<12} {'page':<36} {'median s':>9} {'max s':>7} {'HTML KiB':>9}  aim < 1 s")
    for name in ("sqlite", "postgresql"):
        for page, figures in results[name].items():
            print(f"{name:<12} {page:<36} {figures['median_s']:>9} {figures['max_s']:>7} "
                  f"{figures['html_bytes'] / 1024:>9.0f}  {'ok' if figures['max_s'] < 1 else 'SLOW'}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
