"""An entity keyed by two fields: order lines, named by order and line number, from a shop into accounting.

The shop (SQLite) holds orders and their lines; accounting, the target, is SQLite, PostgreSQL
or MariaDB, its lines' primary key the pair (order_ref, line). One order id holds the key
separator (``A|7``), so its lines' record keys escape it (``A\\|7|1``). The tests follow the
composite key through extract, checks, classification, the queue, parents, the ledger, the
report, a record's trace and the full compare (``docs/design.md``, "Composite keys").
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    and_,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url

from truesync.config import Config, load_config
from truesync.pipeline.compare import run_compare
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.reporting import html as report_html
from truesync.reporting.trace import trace
from truesync.store import Store, queue, staging
from truesync.store.schema import ledger
from truesync.support.sqldb import open_engine

FLOW = "shop_to_accounting"
OLD = datetime(2026, 10, 1, 12)
EVERYTHING = Window(datetime(2026, 1, 1), datetime(2026, 11, 1))
CONFIG = {
    "systems.yaml": """
        systems:
          shop: {kind: sql, connection: t_shop}
          accounting: {kind: sql, connection: t_accounting}
    """,
    "entities.yaml": """
        entities:
          order:
            key: order_id
            fields:
              order_id: {type: string, required: true}
              total: {type: decimal, scale: 2}
          order_line:
            key: [order_id, line_no]
            depends_on: [order]
            references: {order_id: order}
            fields:
              order_id: {type: string, required: true}
              line_no: {type: integer, required: true}
              sku: {type: string, required: true}
              quantity: {type: integer, required: true, min: 0}
              price: {type: decimal, scale: 2, required: true}
    """,
    "mappings.yaml": """
        mappings:
          shop:
            version: 1
            entities:
              order: {table: orders, key: id, cursor: updated_at, fields: {order_id: id, total: total}}
              order_line:
                table: order_lines
                key: [order_no, line_no]
                cursor: updated_at
                fields: {order_id: order_no, line_no: line_no, sku: sku, quantity: qty, price: price}
          accounting:
            version: 1
            entities:
              order: {table: sales_orders, key: ext, cursor: modified_at, fields: {order_id: ext, total: amount}}
              order_line:
                table: sales_order_lines
                key: [order_ref, line]
                cursor: modified_at
                fields: {order_id: order_ref, line_no: line, sku: product, quantity: quantity, price: unit_price}
    """,
    "flows.yaml": f"""
        flows:
          {FLOW}:
            source: shop
            target: accounting
            entities: [order, order_line]
            quality: {{max_blocked_share: 1.0}}
            compare: {{max_delete_share: 1.0, deletes: {{order_line: delete}}}}
    """,
}
ORDERS = ["O1", "O2", "O3", "A|7"]
LINES = [  # (order, line, sku, quantity, price): five good lines and three the queue keeps
    ("O1", 1, "SKU-1", 2, 10), ("O1", 2, "SKU-2", 1, 5), ("O2", 1, "SKU-1", 4, 10), ("A|7", 1, "SKU-3", 1, 7.5),
    ("A|7", 2, "SKU-1", 3, 10),
    ("O3", 1, "SKU-2", -2, 5),  # a negative quantity
    ("O9", 1, "SKU-1", 1, 10),  # an order the shop does not hold: it waits for its parent
    ("O2", None, "SKU-9", 1, 1),  # no line number: no key
]  # fmt: skip
GOOD = {"O1|1", "O1|2", "O2|1", "A\\|7|1", "A\\|7|2"}


def tables() -> tuple[MetaData, MetaData]:
    shop, accounting = MetaData(), MetaData()
    Table("orders", shop, Column("id", String(10), primary_key=True), Column("total", Numeric(10, 2)),
          Column("updated_at", DateTime))  # fmt: skip
    Table("order_lines", shop, Column("order_no", String(10)), Column("line_no", Integer), Column("sku", String(10)),
          Column("qty", Integer), Column("price", Numeric(10, 2)), Column("updated_at", DateTime))  # fmt: skip
    Table("sales_orders", accounting, Column("row", Integer, primary_key=True, autoincrement=True),
          Column("ext", String(10), unique=True), Column("amount", Numeric(10, 2)),
          Column("modified_at", DateTime))  # fmt: skip
    Table("sales_order_lines", accounting, Column("order_ref", String(10)), Column("line", Integer),
          Column("product", String(10)), Column("quantity", Integer), Column("unit_price", Numeric(10, 2)),
          Column("modified_at", DateTime), PrimaryKeyConstraint("order_ref", "line"))  # fmt: skip
    return shop, accounting


class Systems:
    """The shop and accounting, the configuration pointing at them, and the store."""

    def __init__(self, root: Path, accounting_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
        config_dir = root / "config"
        config_dir.mkdir()
        for name, text in CONFIG.items():
            (config_dir / name).write_text(textwrap.dedent(text))
        monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(config_dir))
        shop_url = make_url(f"sqlite:///{root / 'shop.db'}")
        monkeypatch.setenv("AIRFLOW_CONN_T_SHOP", shop_url.render_as_string(False))
        monkeypatch.setenv("AIRFLOW_CONN_T_ACCOUNTING", accounting_url.render_as_string(False))
        self.shop, self.accounting = open_engine(shop_url), open_engine(accounting_url)
        shop_tables, accounting_tables = tables()
        shop_tables.create_all(self.shop)
        accounting_tables.create_all(self.accounting)
        self.t = {**shop_tables.tables, **accounting_tables.tables}
        lines = [dict(zip(("order_no", "line_no", "sku", "qty", "price"), line, strict=True)) for line in LINES]
        with self.shop.begin() as conn:
            conn.execute(insert(self.t["orders"]), [{"id": o, "total": 20, "updated_at": OLD} for o in ORDERS])
            conn.execute(insert(self.t["order_lines"]), [{**line, "updated_at": OLD} for line in lines])
        self.config: Config = load_config()
        self.store = Store()

    def sync(self, run_id: str) -> dict[str, Any]:
        return run_flow(self.config, self.store, FLOW, f"{FLOW}:{run_id}", EVERYTHING)

    def target_lines(self) -> dict[tuple[str, int], tuple[str, int, str]]:
        t = self.t["sales_order_lines"]
        with self.accounting.connect() as conn:
            rows = conn.execute(select(t.c.order_ref, t.c.line, t.c.product, t.c.quantity, t.c.unit_price))
            return {(o, n): (p, q, f"{u:.2f}") for o, n, p, q, u in rows}

    def results(self, run_id: str, entity: str = "order_line") -> dict[str, tuple[str, str]]:
        frame = staging.run_results(self.store, f"{FLOW}:{run_id}", entity)
        return {r.key: (r[2], r.outcome) for r in frame.itertuples(index=False)}

    def run(self, engine: Any, statement: Any) -> None:
        with engine.begin() as conn:
            conn.execute(statement)

    def close(self) -> None:
        self.shop.dispose()
        self.accounting.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def systems(
    request: pytest.FixtureRequest, state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Systems]:
    """Both systems after a first sync; beside a PostgreSQL target the store is on PostgreSQL too."""
    if request.param == "sqlite":
        url = make_url(f"sqlite:///{tmp_path / 'accounting.db'}")
    elif request.param == "mysql":
        url = request.getfixturevalue("mysql_url")
    else:
        databases = request.getfixturevalue("postgres_databases")
        monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STORE", databases.new().render_as_string(False))
        url = databases.new()
    opened = Systems(state.parent, url, monkeypatch)
    opened.report = opened.sync("first")
    yield opened
    opened.close()


def _line(o: str, n: int) -> Any:
    t = "order_lines"
    return lambda tables: and_(tables[t].c.order_no == o, tables[t].c.line_no == n)


def test_lines_load_by_both_fields_and_the_bad_ones_wait_in_the_queue_by_their_record_key(systems: Systems) -> None:
    lines = systems.report["entities"]["order_line"]
    assert lines["conserved"] and lines["extracted"] == 8
    assert systems.target_lines() == {
        ("O1", 1): ("SKU-1", 2, "10.00"), ("O1", 2): ("SKU-2", 1, "5.00"), ("O2", 1): ("SKU-1", 4, "10.00"),
        ("A|7", 1): ("SKU-3", 1, "7.50"), ("A|7", 2): ("SKU-1", 3, "10.00"),
    }  # fmt: skip
    results = systems.results("first")
    assert {k for k, (klass, outcome) in results.items() if outcome == "created"} == GOOD
    assert results["O3|1"] == ("invalid", "quarantined") and results["O9|1"][1] == "quarantined"
    held = {e["key"]: e for e in queue.list_exceptions(systems.store, flow=FLOW, entity="order_line", status="open")}
    assert held["O3|1"]["field"] == "quantity" and "must be at least 0" in held["O3|1"]["reason"]
    assert held["O9|1"]["check_name"] == "parent_exists" and "order 'O9'" in held["O9|1"]["reason"]
    (keyless,) = [e for k, e in held.items() if k not in ("O3|1", "O9|1")]
    assert (keyless["check_name"], keyless["field"]) == ("expect_column_values_to_not_be_null", "line_no")
    with systems.store.engine.connect() as conn:
        kept = conn.execute(select(ledger.c.key).where(ledger.c.flow == FLOW, ledger.c.entity == "order_line"))
        assert set(kept.scalars()) == GOOD
    page = report_html.html_path(FLOW, f"{FLOW}:first").read_text()
    assert "O3|1" in page and "O9|1" in page


def test_a_rerun_writes_nothing_and_changes_on_either_side_are_classified_by_the_pair(systems: Systems) -> None:
    again = systems.sync("again")["entities"]["order_line"]
    assert (again["outcomes"]["created"], again["outcomes"]["updated"]) == (0, 0)
    lines, accounting = systems.t["order_lines"], systems.t["sales_order_lines"]
    later = datetime(2026, 10, 15)
    systems.run(systems.shop, update(lines).where(_line("O1", 2)(systems.t)).values(qty=5, updated_at=later))
    moved = datetime.now(UTC).replace(tzinfo=None)  # after the ledger's write time: someone edited accounting
    where = and_(accounting.c.order_ref == "A|7", accounting.c.line == 1)
    systems.run(systems.accounting, update(accounting).where(where).values(unit_price=9, modified_at=moved))
    systems.sync("changed")
    results = systems.results("changed")
    assert results["O1|2"] == ("delayed", "updated")
    assert results["A\\|7|1"] == ("overwritten", "updated")
    assert systems.target_lines()[("O1", 2)] == ("SKU-2", 5, "5.00")
    assert systems.target_lines()[("A|7", 1)] == ("SKU-3", 1, "7.50"), "the shop owns the price: restored"
    assert {k for k, (klass, _) in results.items() if klass == "in_sync"} == GOOD - {"O1|2", "A\\|7|1"}


def test_a_records_trace_reads_it_by_both_fields_on_each_side(systems: Systems) -> None:
    found = trace(systems.config, systems.store, FLOW, "order_line", "A\\|7|2")
    values = {row["field"]: (row["source"], row["target"]) for row in found["values"]}
    assert values["order_id"] == ("A|7", "A|7") and values["line_no"] == ("2", "2")
    assert values["quantity"] == ("3", "3") and not any(row["differs"] for row in found["values"])
    assert found["ledger"] is not None and [r["outcome"] for r in found["runs"]] == ["created"]


def test_a_compare_recreates_a_line_deleted_in_accounting_and_deletes_one_gone_from_the_shop(systems: Systems) -> None:
    accounting = systems.t["sales_order_lines"]
    systems.run(systems.accounting, delete(accounting).where(accounting.c.order_ref == "O2"))
    systems.run(systems.shop, delete(systems.t["order_lines"]).where(_line("O1", 1)(systems.t)))
    report = run_compare(systems.config, systems.store, FLOW, f"{FLOW}:compare")
    results = systems.results("compare")
    assert results["O2|1"] == ("missing", "created")
    assert results["O1|1"] == ("deleted", "removed")
    assert set(systems.target_lines()) == {("O1", 2), ("O2", 1), ("A|7", 1), ("A|7", 2)}
    assert report["entities"]["order_line"]["conserved"]
    with systems.store.engine.connect() as conn:
        kept = conn.execute(select(ledger.c.key).where(ledger.c.flow == FLOW, ledger.c.entity == "order_line"))
        assert set(kept.scalars()) == GOOD - {"O1|1"}
