"""A flow that waits for another flow's writes, through a real scheduler (Airflow Assets).

``webshop_to_accounting`` is ``triggered_by: [stockctl.product]``. A new product is first
ordered in the shop; a run of ``webshop_to_stockctl`` triggered by hand puts it into stock
control, and its write starts accounting's flow, which books the order line naming it, up to
where stock control's run got and after the product. The scheduler makes asset-triggered runs
in the loop that makes scheduled ones, so it runs with its schedules on; every flow's cron is
moved to New Year, so that no scheduled run comes between.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from truesync.cli import main as truesync
from truesync.config import load_config
from truesync.pipeline import dags
from truesync.sandbox import systems as sandbox
from truesync.sandbox.localairflow import LocalAirflow
from truesync.sandbox.sessions import configured
from truesync.store import Store, runs
from truesync.store.schema import ledger
from truesync.support.sqldb import open_engine

PRODUCER, CONSUMER = "webshop_to_stockctl", "webshop_to_accounting"
ASSET = "truesync://stockctl/product"


def test_products_written_into_stock_control_start_accounting_which_books_their_lines_after_them(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(configured(tmp_path / "config", {"schedule": "0 0 1 1 *"})))
    assert truesync(["sandbox", "init", "--scale", "100", "--days", "1"]) == 0
    loaded = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    for flow in (PRODUCER, CONSUMER):  # the first full loads, in process: they emit no Asset event
        assert truesync(["run", flow, "--start", "1970-01-01T00:00", "--end", loaded.isoformat(), "-q"]) == 0
    order = _new_line_naming_a_new_product(loaded)

    airflow = LocalAirflow(state / "airflow", schedules=True)
    airflow.prepare([dags.dag_id(PRODUCER), dags.dag_id(CONSUMER)])
    assert airflow.query("PRAGMA journal_mode") == [("wal",)], "Airflow's SQLite metadata in WAL, as the store"
    airflow.trigger(dags.dag_id(PRODUCER), "manual__products")
    airflow.start()
    try:
        assert airflow.wait_for_run(dags.dag_id(PRODUCER), "manual__products") == "success"
        started = _asset_triggered_run(airflow, dags.dag_id(CONSUMER))
        assert airflow.wait_for_run(dags.dag_id(CONSUMER), started) == "success"
    finally:
        airflow.stop()

    assert airflow.dag_runs(dags.dag_id(CONSUMER)) == [(started, "success")], "the Asset's run, and no other"
    store = Store()
    made = json.loads(runs.get(store, f"{PRODUCER}:manual__products")["report"])
    booked = json.loads(runs.get(store, dags.store_run_id(dags.dag_id(CONSUMER), started, 0))["report"])
    assert made["entities"]["product"]["outcomes"]["created"] == 1
    assert booked["window"]["end"] == made["window"]["end"], "accounting books up to where stock control got"
    assert booked["entities"]["order_line"]["outcomes"]["created"] == 1
    assert _line(order) == [("WEB-ASSET", 2)]
    written = _written(store, ("WEB-ASSET", f"{order}|99"))
    assert written[(PRODUCER, "product")] <= written[(CONSUMER, "order_line")], "the product before its line"

    events = [e for e in airflow.asset_events() if e[0] == ASSET]
    assert [(dag, run) for _, dag, run, _ in events] == [(dags.dag_id(PRODUCER), "manual__products")]
    extra = events[0][3]
    assert (extra["flow"], extra["window_end"], extra["written"]) == (PRODUCER, made["window"]["end"], 1)
    graph = airflow.query(
        "SELECT r.dag_id, al.name FROM dag_schedule_asset_reference r JOIN asset a ON a.id = r.asset_id"
        " JOIN asset_alias_asset aa ON aa.asset_id = a.id JOIN asset_alias al ON al.id = aa.alias_id WHERE a.uri = :u",
        u=ASSET,
    )
    assert graph == [(dags.dag_id(CONSUMER), "stockctl.product")], "the asset graph: alias -> Asset -> accounting"


def _new_line_naming_a_new_product(now: datetime) -> str:
    """A product the shop listed yesterday, first ordered now on a line of an order accounting holds."""
    urls = sandbox.system_urls(load_config())
    accounting, shop = open_engine(urls["accounting"]), open_engine(urls["webshop"])
    try:
        with accounting.connect() as conn:
            order = str(conn.exec_driver_sql("SELECT MIN(order_ref) FROM sales_orders").scalar())
        with shop.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO products (sku, name, updated_at) VALUES ('WEB-ASSET', 'Asset Lamp', ?)",
                (now - timedelta(days=1),),
            )
            conn.exec_driver_sql(
                "INSERT INTO order_lines (order_no, line_no, sku, quantity, unit_price, updated_at)"
                " VALUES (?, 99, 'WEB-ASSET', 2, 9.99, ?)",
                (order, now + timedelta(seconds=1)),
            )
    finally:
        accounting.dispose()
        shop.dispose()
    return order


def _asset_triggered_run(airflow: LocalAirflow, dag_id: str, timeout: float = 180) -> str:
    """The run id of the DAG's one asset-triggered run, once the scheduler made it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = airflow.query("SELECT run_id FROM dag_run WHERE dag_id = :d AND run_type = 'asset_triggered'", d=dag_id)
        if found:
            assert len(found) == 1, found
            return str(found[0][0])
        time.sleep(3)
    raise AssertionError(f"no asset-triggered run of {dag_id} within {timeout} s")


def _line(order: str) -> list[tuple]:
    engine = open_engine(sandbox.system_urls(load_config())["accounting"])
    try:
        with engine.connect() as conn:
            query = "SELECT sku, quantity FROM sales_order_lines WHERE order_ref = ? AND line_no = 99"
            return [tuple(r) for r in conn.exec_driver_sql(query, (order,))]
    finally:
        engine.dispose()


def _written(store: Store, keys: tuple[str, ...]) -> dict[tuple[str, str], datetime]:
    """When the ledger says each (flow, entity) wrote one of the keys."""
    query = select(ledger.c.flow, ledger.c.entity, ledger.c.target_ts).where(ledger.c.key.in_(keys))
    with store.engine.connect() as conn:
        return {(flow, entity): ts for flow, entity, ts in conn.execute(query)}
