"""A database connection dropped in the middle of a write batch: the task fails, its retry finishes the run.

The fault is real: just before the statement that writes a batch, the server is told to end
that connection (PostgreSQL ``pg_terminate_backend``, MariaDB ``KILL``), so the statement meets
a dead connection. The failed sync task is then run again, as Airflow retries it. Afterwards
every record has its labelled class (or ``in_sync`` when the killed attempt had already written
it), targets equal sources, nothing is duplicated, conservation holds and the watermark waited.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sandbox_demo import SHOP_FLOW, Demo, assert_conserved
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import OperationalError

from truesync import cli
from truesync.config import load_config
from truesync.connectors.errors import SystemUnavailable
from truesync.pipeline.extract import extract_entity
from truesync.pipeline.finalize import finish_run
from truesync.pipeline.job import EntityJob, begin_run
from truesync.pipeline.load import plan_partitions, sync_entity
from truesync.sandbox import systems as sandbox
from truesync.sandbox.groundtruth import differences, drift, first_results, held_keys
from truesync.store import Store, runs
from truesync.store.schema import ledger


@dataclass
class Drop:
    """Ends the connection that is about to run the first ``INSERT`` into ``table`` on ``url``'s database."""

    url: URL
    table: str
    fired: int = 0

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.fired or conn.engine.url.database != self.url.database:
            return
        if not statement.lstrip().upper().startswith("INSERT INTO") or self.table not in statement.split("(")[0]:
            return
        self.fired += 1
        dbapi = conn.connection.dbapi_connection
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as server:
            if conn.dialect.name == "postgresql":
                server.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": dbapi.get_backend_pid()})
            else:
                server.execute(text(f"KILL {int(dbapi.thread_id())}"))
        admin.dispose()


@contextmanager
def dropping(drop: Drop) -> Iterator[Drop]:
    event.listen(Engine, "before_cursor_execute", drop)
    try:
        yield drop
    finally:
        event.remove(Engine, "before_cursor_execute", drop)


CASES = {
    # what is dropped: (the server, the system on it, the table whose write meets the dead connection)
    "postgresql-target": ("postgresql", "crm", "deals"),
    "mariadb-target": ("mariadb", "crm", "deals"),
    "postgresql-store-between-target-and-ledger": ("postgresql", "store", ledger.name),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest, state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Demo, Drop]]:
    server, system, table = CASES[request.param]
    url = request.getfixturevalue("postgres_url" if server == "postgresql" else "mysql_url")
    monkeypatch.setenv(f"AIRFLOW_CONN_TRUESYNC_{system.upper()}", url.render_as_string(False))
    assert cli.main(["sandbox", "init", "--scale", "200"]) == 0
    config = load_config()
    demo = Demo(config, Store(), state, sandbox.system_urls(config))
    yield demo, Drop(url, table)
    demo.close()


def _run_retrying(demo: Demo, day: int, drop: Drop | None) -> tuple[dict[str, Any], int]:
    """The day's run step by step, as the DAG's tasks; a sync task that fails is run again once."""
    window, run_id, failures = demo.window(SHOP_FLOW, day), f"{SHOP_FLOW}:day{day}", 0
    watermark = runs.watermark(demo.store, SHOP_FLOW)
    begin_run(demo.store, SHOP_FLOW, run_id, window, False)
    for entity in demo.config.load_order(demo.config.flows[SHOP_FLOW].entities):
        job = EntityJob(demo.config, demo.store, SHOP_FLOW, entity, run_id)
        extract_entity(job, window)
        for part in plan_partitions(job):
            try:
                with dropping(drop) if drop else _nothing():
                    sync_entity(job, window, False, part)
            except (SystemUnavailable, OperationalError):
                failures += 1
                assert runs.watermark(demo.store, SHOP_FLOW) == watermark, "the watermark waits for the run"
                sync_entity(job, window, False, part)
    return finish_run(demo.config, demo.store, SHOP_FLOW, run_id), failures


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_a_dropped_connection_fails_the_task_and_its_retry_finishes_the_run(case: tuple[Demo, Drop]) -> None:
    demo, drop = case
    report, failures = _run_retrying(demo, 0, drop)
    assert drop.fired == 1 and failures == 1
    assert_conserved(demo, report)
    for day in range(1, sandbox.DEMO_DAYS):
        assert_conserved(demo, _run_retrying(demo, day, None)[0])

    labels = demo.labels()
    diff = differences(labels[labels["flow"] == SHOP_FLOW], first_results(demo.store, SHOP_FLOW))
    # Records whose target write committed before the ledger's connection dropped are in sync on the retry
    # (a record labelled more than once: where one of its labels is such a write).
    written = (diff["class_got"] == "in_sync") & (diff["outcome_want"].isin(["created", "updated"]))
    written_before = written.groupby([diff["entity"], diff["key"]]).transform("any")
    assert diff[~written_before].empty, diff.to_string()
    assert written_before.any() == (drop.table == ledger.name)
    for entity in ("customer", "order"):
        assert drift(demo.config, SHOP_FLOW, entity) <= held_keys(demo.store, SHOP_FLOW, entity)
    deals = demo.rows("crm", "deals")
    assert len(deals) == len({d["order_ref"] for d in deals})
    with demo.store.engine.connect() as conn:
        entries = conn.execute(text("SELECT count(*), count(DISTINCT key) FROM ts_ledger")).one()
    assert entries[0] == entries[1]
