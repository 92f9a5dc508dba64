"""The full compare on a small shop and CRM of its own: deletes, their guard, dry runs and bad input.

The shop (SQLite) holds customers and their orders; the CRM target is SQLite, PostgreSQL or
MariaDB (the servers when configured), the store SQLite, or PostgreSQL beside a PostgreSQL
target. Every test first syncs everything with an incremental run, so the ledger knows every
record, then changes the systems behind truesync's back and compares. The labelled quiet
drift of the demo sandbox is tested in ``test_compare_drift.py``.
"""

from __future__ import annotations

import json
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from report_runs import Page, page_of
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.types import TypeEngine

from truesync.cli import main as truesync
from truesync.config import Config, load_config
from truesync.connectors.sql.system import SqlSystem
from truesync.pipeline.compare import DeleteGuardError, run_compare
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.reporting import html as report_html
from truesync.store import Store, queue, runs, staging
from truesync.store.schema import SCAN_PREFIX, compare_doubts, ledger
from truesync.support.sqldb import open_engine

FLOW = "shop_to_crm"
SECRET = "compare-s3cret"
OLD = datetime(2026, 10, 1, 12)
EVERYTHING = Window(datetime(2026, 1, 1), datetime(2026, 11, 1))
AMOUNT = Numeric(10, 2)  # the type both keep an order's total in
CONFIG = {
    "systems.yaml": """
        systems:
          shop: {kind: sql, connection: t_shop}
          crm: {kind: sql, connection: t_crm}
    """,
    "entities.yaml": """
        entities:
          customer:
            key: customer_id
            fields:
              customer_id: {type: string, required: true}
              name: {type: string, required: true, pii: true}
          order:
            key: order_id
            depends_on: [customer]
            references: {customer_id: customer}
            fields:
              order_id: {type: string, required: true}
              customer_id: {type: string, required: true}
              total: {type: decimal, scale: 2}
    """,
    "mappings.yaml": """
        mappings:
          shop:
            version: 1
            entities:
              customer: {table: customers, key: id, cursor: updated_at, fields: {customer_id: id, name: name}}
              order: {table: orders, key: id, cursor: updated_at,
                      fields: {order_id: id, customer_id: customer, total: total}}
          crm:
            version: 1
            entities:
              customer: {table: contacts, key: ext, cursor: modified_at, fields: {customer_id: ext, name: name}}
              order: {table: deals, key: ext, cursor: modified_at,
                      fields: {order_id: ext, customer_id: contact, total: amount}}
    """,
}


def tables(unique: bool = True, amount: TypeEngine[Any] = AMOUNT) -> tuple[MetaData, MetaData]:
    """The shop's and the CRM's tables; ``amount``: the type the CRM keeps an order's total in."""
    shop, crm = MetaData(), MetaData()
    Table("customers", shop, Column("id", String(10), primary_key=True), Column("name", String(40)),
          Column("updated_at", DateTime))  # fmt: skip
    Table("orders", shop, Column("id", String(10), primary_key=True), Column("customer", String(10)),
          Column("total", Numeric(10, 2)), Column("updated_at", DateTime))  # fmt: skip
    Table("contacts", crm, Column("row", Integer, primary_key=True, autoincrement=True),
          Column("ext", String(10), unique=unique), Column("name", String(40)), Column("modified_at", DateTime),
          Column("deleted_at", DateTime))  # fmt: skip
    Table("deals", crm, Column("row", Integer, primary_key=True, autoincrement=True),
          Column("ext", String(10), unique=True), Column("contact", String(10)), Column("amount", amount),
          Column("modified_at", DateTime))  # fmt: skip
    return shop, crm


class Systems:
    """The shop and the CRM, the configuration pointing at them, and the store."""

    def __init__(
        self,
        root: Path,
        crm_url: URL,
        monkeypatch: pytest.MonkeyPatch,
        compare: str,
        unique: bool = True,
        shop_url: URL | None = None,
        amount: TypeEngine[Any] = AMOUNT,
    ):
        config_dir = root / "config"
        config_dir.mkdir()
        for name, text in CONFIG.items():
            (config_dir / name).write_text(textwrap.dedent(text))
        flows = f"""
            flows:
              {FLOW}:
                source: shop
                target: crm
                entities: [customer, order]
                quality: {{max_blocked_share: 1.0}}
                compare: {compare}
        """
        (config_dir / "flows.yaml").write_text(textwrap.dedent(flows))
        monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(config_dir))
        self.shop_url = shop_url or make_url(f"sqlite:///{root / 'shop.db'}")
        monkeypatch.setenv("AIRFLOW_CONN_T_SHOP", self.shop_url.render_as_string(False))
        monkeypatch.setenv("AIRFLOW_CONN_T_CRM", crm_url.render_as_string(False))
        self.shop, self.crm = open_engine(self.shop_url), open_engine(crm_url)
        shop_tables, crm_tables = tables(unique, amount)
        shop_tables.create_all(self.shop)
        crm_tables.create_all(self.crm)
        self.t = {**shop_tables.tables, **crm_tables.tables}
        customers = [{"id": f"C{i:02d}", "name": f"Customer {i}", "updated_at": OLD} for i in range(1, 21)]
        orders = [{"id": f"O{i:02d}", "customer": f"C{i:02d}", "total": i, "updated_at": OLD} for i in range(1, 11)]
        with self.shop.begin() as conn:
            conn.execute(insert(self.t["customers"]), customers)
            conn.execute(insert(self.t["orders"]), orders)
        self.config: Config = load_config()
        self.store = Store()

    def sync(self) -> dict[str, Any]:
        return run_flow(self.config, self.store, FLOW, f"{FLOW}:sync", EVERYTHING)

    def compare(self, run_id: str = "compare", dry_run: bool = False) -> dict[str, Any]:
        return run_compare(self.config, self.store, FLOW, f"{FLOW}:{run_id}", dry_run)

    def results(self, run_id: str = "compare") -> dict[tuple[str, str], tuple[str, str, bool]]:
        """(entity, key) -> (class, outcome, quiet) of every record not simply in sync."""
        frame = staging.run_results(self.store, f"{FLOW}:{run_id}")
        quiet = _quiet(self.store, f"{FLOW}:{run_id}")
        return {
            (r.entity, r.key): (r[2], r.outcome, quiet[(r.entity, r.key)])
            for r in frame.itertuples(index=False)
            if r[2] != "in_sync"
        }

    def keys(self, engine: Engine, table: str, live: bool = False) -> list[str]:
        t = self.t[table]
        column = t.c.ext if "ext" in t.c else t.c.id
        query = select(column).order_by(column)
        if live:
            query = query.where(t.c.deleted_at.is_(None))
        with engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def run(self, engine: Engine, statement: Any) -> None:
        with engine.begin() as conn:
            conn.execute(statement)

    def run_query(self, engine: Engine, query: Any) -> list[Any]:
        with engine.connect() as conn:
            return list(conn.execute(query))

    def close(self) -> None:
        self.shop.dispose()
        self.crm.dispose()


def _quiet(store: Store, run_id: str) -> dict[tuple[str, str], bool]:
    from truesync.store.schema import results

    query = select(results.c.entity, results.c.key, results.c.quiet).where(results.c.run_id == run_id)
    with store.engine.connect() as conn:
        return {(e, k): bool(q) for e, k, q in conn.execute(query)}


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def crm_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> URL:
    """The CRM's database; beside a PostgreSQL CRM the store is on PostgreSQL too."""
    if request.param == "sqlite":
        return make_url(f"sqlite:///{tmp_path / 'crm.db'}")
    if request.param == "mysql":
        return request.getfixturevalue("mysql_url")
    databases = request.getfixturevalue("postgres_databases")
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STORE", databases.new().render_as_string(False))
    return databases.new()


def open_systems(
    state: Path,
    crm_url: URL,
    monkeypatch: pytest.MonkeyPatch,
    compare: str,
    shop_url: URL | None = None,
    amount: TypeEngine[Any] = AMOUNT,
) -> Systems:
    systems = Systems(state.parent, crm_url, monkeypatch, compare, shop_url=shop_url, amount=amount)
    report = systems.sync()
    assert report["totals"]["created"] == 30
    return systems


def _orphan_and_deletes(systems: Systems) -> None:
    """At the source: C05 and its order O05 deleted, C15 (no orders) deleted, C06 deleted while its
    order O06 stays; in the CRM: C99 created by someone else."""
    shop = systems.shop
    systems.run(shop, delete(systems.t["orders"]).where(systems.t["orders"].c.id == "O05"))
    systems.run(shop, delete(systems.t["customers"]).where(systems.t["customers"].c.id.in_(["C05", "C06", "C15"])))
    systems.run(systems.crm, insert(systems.t["contacts"]).values(ext="C99", name="Walk-in", modified_at=OLD))


def test_deletes_go_children_first_and_a_parent_whose_children_remain_waits(
    state: Path, crm_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    systems = open_systems(
        state, crm_url, monkeypatch, "{max_delete_share: 1.0, deletes: {customer: delete, order: delete}}"
    )
    _orphan_and_deletes(systems)
    report = systems.compare()
    assert systems.results() == {
        ("order", "O05"): ("deleted", "removed", True),
        ("customer", "C05"): ("deleted", "removed", True),
        ("customer", "C15"): ("deleted", "removed", True),
        ("customer", "C06"): ("deleted", "quarantined", True),
        ("customer", "C99"): ("target_only", "reported", True),
    }
    assert "C05" not in systems.keys(systems.crm, "contacts") and "O05" not in systems.keys(systems.crm, "deals")
    assert {"C06", "C99"} <= set(systems.keys(systems.crm, "contacts")), "held and someone else's records stay"
    held = queue.list_exceptions(systems.store, flow=FLOW, entity="customer", status="open")
    assert [(e["key"], e["check_name"]) for e in held] == [("C06", "children_remain")]
    assert "1 order record(s) in 'crm' still reference it" in held[0]["reason"]
    customer = report["entities"]["customer"]
    assert customer["extracted"] == 21 and customer["conserved"]
    assert customer["outcomes"] | {} == {"created": 0, "updated": 0, "unchanged": 17, "quarantined": 1, "removed": 2,
                                         "soft_deleted": 0, "reported": 1}  # fmt: skip
    assert report["quiet_drift"]["customer"]["counts"] == {"deleted": 3, "target_only": 1}
    assert any(a["metric"] == "quiet_drift" for a in report["quality"]["alerts"])
    with systems.store.engine.connect() as conn:
        remembered = set(conn.execute(select(ledger.c.key).where(ledger.c.entity == "customer")).scalars())
    assert {"C05", "C15"}.isdisjoint(remembered) and "C06" in remembered

    systems.run(systems.shop, delete(systems.t["orders"]).where(systems.t["orders"].c.id == "O06"))
    again = systems.compare("again")
    assert systems.results("again") == {
        ("order", "O06"): ("deleted", "removed", True),
        ("customer", "C06"): ("deleted", "removed", False),  # held by the first compare: known, not news
        ("customer", "C99"): ("target_only", "reported", True),
    }
    assert again["entities"]["customer"]["exceptions"]["resolved"] == 1
    assert queue.list_exceptions(systems.store, flow=FLOW, status="open") == []
    systems.close()


@pytest.fixture(params=["postgresql", "mysql", "postgresql-mysql"])
def server_pair(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[URL, URL]:
    """The shop's and the CRM's databases, both on servers that hash (PostgreSQL, MariaDB, or one of each);
    beside a PostgreSQL shop the store is on PostgreSQL too."""
    shop, _, crm = request.param.partition("-")

    def server(kind: str) -> URL:
        if kind == "mysql":
            return request.getfixturevalue("mysql_url")  # one database holds both systems' tables
        return request.getfixturevalue("postgres_databases").new()

    if shop == "postgresql":
        monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STORE", server(shop).render_as_string(False))
    return server(shop), server(crm or shop)


def _no_row_scan(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a row scan, where both sides give digests and the ledger knows every record")


def _fetches(monkeypatch: pytest.MonkeyPatch) -> set[tuple[str, str]]:
    """From now on, every (table, key) a SQL system reads by key, as the set returned; a row scan fails."""
    read: set[tuple[str, str]] = set()
    fetch = SqlSystem.fetch

    def counted(self: SqlSystem, mapping: Any, keys: list[str], hidden: Any = None) -> Any:
        read.update((mapping.table, key) for key in keys)
        return fetch(self, mapping, keys, hidden)

    monkeypatch.setattr(SqlSystem, "fetch", counted)
    monkeypatch.setattr(SqlSystem, "scan", _no_row_scan)
    return read


def test_with_both_sides_on_servers_a_compare_reads_only_what_digests_and_ledger_cannot_confirm(
    state: Path, server_pair: tuple[URL, URL], monkeypatch: pytest.MonkeyPatch
) -> None:
    shop_url, crm_url = server_pair
    policy = "{max_delete_share: 1.0, deletes: {customer: delete}}"
    systems = open_systems(state, crm_url, monkeypatch, policy, shop_url)
    customers, contacts, orders = systems.t["customers"], systems.t["contacts"], systems.t["orders"]
    systems.run(systems.crm, update(contacts).where(contacts.c.ext == "C03").values(name="Typo"))  # time kept
    systems.run(systems.shop, update(orders).where(orders.c.id == "O02").values(total=99))  # time kept
    renamed = update(customers).where(customers.c.id == "C04").values(name="Renamed", updated_at=datetime(2026, 11, 2))
    systems.run(systems.shop, renamed)
    systems.run(systems.shop, delete(customers).where(customers.c.id == "C15"))
    systems.run(systems.crm, insert(contacts).values(ext="C99", name="Walk-in", modified_at=OLD))
    read = _fetches(monkeypatch)
    report = systems.compare()
    assert systems.results() == {
        ("customer", "C03"): ("overwritten", "updated", True),
        ("customer", "C04"): ("delayed", "updated", False),
        ("order", "O02"): ("delayed", "updated", True),
        ("customer", "C15"): ("deleted", "removed", True),
        ("customer", "C99"): ("target_only", "reported", True),
    }
    changed = {("customers", "C03"), ("contacts", "C03"), ("customers", "C04"), ("contacts", "C04")}
    changed |= {("orders", "O02"), ("deals", "O02"), ("contacts", "C02")}  # O02's customer: its reference checked
    assert read == changed | {("customers", "C15")}, "no untouched row is read; the deleted one is asked again"
    assert report["entities"]["customer"]["conserved"] and report["entities"]["order"]["conserved"]
    assert report["entities"]["customer"]["classes"]["in_sync"] == 17, "19 at the source, 2 of them repaired"
    names = dict(systems.run_query(systems.crm, select(contacts.c.ext, contacts.c.name)))
    assert (names["C03"], names["C04"]) == ("Customer 3", "Renamed")

    read.clear()
    systems.compare("again")
    assert systems.results("again") == {("customer", "C99"): ("target_only", "reported", True)}
    assert read == set(), "after the repairs the ledger confirms every record, and none is read"
    systems.close()


@pytest.mark.parametrize("amount", [AMOUNT, String(20)], ids=["number", "text"])
def test_digests_spell_a_field_without_its_length_only_where_both_sides_hold_a_number(
    state: Path, server_pair: tuple[URL, URL], monkeypatch: pytest.MonkeyPatch, amount: TypeEngine[Any]
) -> None:
    """A field is spelled without its length (``connectors.sql.digest``) only where both sides hold it in a
    number, date or time column, and then by both. With the CRM keeping an order's total as text, both
    spell it with its length. Either way the untouched records are confirmed by digest, none of them read."""
    shop_url, crm_url = server_pair
    systems = open_systems(state, crm_url, monkeypatch, "{}", shop_url, amount=amount)
    amounts = dict(systems.run_query(systems.crm, select(systems.t["deals"].c.ext, systems.t["deals"].c.amount)))
    assert str(amounts["O03"]) == "3.00", "the text the shop's numeric(10,2) spells"
    read, plain = _fetches(monkeypatch), _plain_columns(monkeypatch)
    report = systems.compare()
    assert systems.results() == {}
    assert report["entities"]["order"]["classes"]["in_sync"] == 10
    assert read == set(), "every record confirmed by digest and ledger"
    number = isinstance(amount, Numeric)
    assert plain == {"customers": set(), "contacts": set()} | (
        {"orders": {"total"}, "deals": {"amount"}} if number else {"orders": set(), "deals": set()}
    )
    systems.close()


def _plain_columns(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """From now on, per table, the columns a SQL system is asked to spell without their length in digests."""
    asked: dict[str, set[str]] = {}
    for name in ("scan_digests", "copy_digests"):
        method = getattr(SqlSystem, name)

        def spy(self: SqlSystem, mapping: Any, *args: Any, method: Any = method, plain: Any = (), **kw: Any) -> Any:
            asked[mapping.table] = set(plain)
            return method(self, mapping, *args, plain=plain, **kw)

        monkeypatch.setattr(SqlSystem, name, spy)
    return asked


def test_a_soft_delete_marks_the_row_and_a_record_written_again_is_live(
    state: Path, crm_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = "{max_delete_share: 1.0, deletes: {customer: {policy: soft, column: deleted_at}}}"
    systems = open_systems(state, crm_url, monkeypatch, policy)
    systems.run(systems.shop, delete(systems.t["customers"]).where(systems.t["customers"].c.id == "C15"))
    systems.compare()
    assert systems.results() == {("customer", "C15"): ("deleted", "soft_deleted", True)}
    assert "C15" in systems.keys(systems.crm, "contacts") and "C15" not in systems.keys(systems.crm, "contacts", True)
    systems.compare("again")
    assert systems.results("again") == {}, "a soft-deleted row is a deleted record, not someone else's"

    systems.run(systems.shop, insert(systems.t["customers"]).values(id="C15", name="Back", updated_at=OLD))
    systems.compare("back")
    assert systems.results("back") == {("customer", "C15"): ("missing", "created", True)}
    assert "C15" in systems.keys(systems.crm, "contacts", live=True), "written again, so live again"
    systems.close()


def test_the_report_policy_leaves_the_target_as_it_is(
    state: Path, crm_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    systems = open_systems(state, crm_url, monkeypatch, "{}")
    _orphan_and_deletes(systems)
    systems.compare()
    assert systems.results() == {
        ("order", "O05"): ("deleted", "reported", True),
        ("customer", "C05"): ("deleted", "reported", True),
        ("customer", "C06"): ("deleted", "reported", True),
        ("customer", "C15"): ("deleted", "reported", True),
        ("customer", "C99"): ("target_only", "reported", True),
    }
    assert len(systems.keys(systems.crm, "contacts")) == 21 and len(systems.keys(systems.crm, "deals")) == 10
    assert _scratch_left(systems.store) == ([], 0), "a finished compare drops its scan tables and doubts"
    systems.close()


def test_above_the_share_guard_nothing_is_deleted_and_the_run_fails_saying_why(
    state: Path, crm_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    systems = open_systems(
        state, crm_url, monkeypatch, "{max_delete_share: 0.1, deletes: {customer: delete, order: delete}}"
    )
    systems.run(systems.shop, delete(systems.t["orders"]).where(systems.t["orders"].c.id == "O01"))
    systems.run(
        systems.shop, delete(systems.t["customers"]).where(systems.t["customers"].c.id.in_(["C11", "C12", "C13"]))
    )
    with pytest.raises(DeleteGuardError) as caught:
        systems.compare()
    message = str(caught.value)
    for part in (
        "flow 'shop_to_crm'",
        "entity 'customer'",
        "3 deletes",
        "15.00%",
        "20 rows",
        "max_delete_share = 10.00%",
    ):
        assert part in message
    assert len(systems.keys(systems.crm, "contacts")) == 20 and len(systems.keys(systems.crm, "deals")) == 10, (
        "the order was within its share, but nothing of the flow is deleted"
    )
    failed = runs.get(systems.store, f"{FLOW}:compare")
    assert failed["status"] == "failed" and "max_delete_share" in json.loads(failed["report"])["reason"]
    systems.close()


def test_a_source_that_reads_empty_never_empties_the_target(
    state: Path, crm_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    systems = open_systems(
        state, crm_url, monkeypatch, "{max_delete_share: 1.0, deletes: {customer: delete, order: delete}}"
    )
    systems.run(systems.shop, delete(systems.t["orders"]))
    systems.run(systems.shop, delete(systems.t["customers"]))
    with pytest.raises(
        DeleteGuardError,
        match="entity 'customer': source 'shop' returned no rows, so all 20 of 20 rows in target 'crm'",
    ):
        systems.compare()
    assert len(systems.keys(systems.crm, "contacts")) == 20 and len(systems.keys(systems.crm, "deals")) == 10
    systems.close()


def test_a_compare_that_fails_keeps_none_of_its_scanned_or_doubted_keys(
    state: Path, crm_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    systems = open_systems(state, crm_url, monkeypatch, "{max_delete_share: 0.01, deletes: {customer: delete}}")
    systems.run(systems.shop, delete(systems.t["customers"]).where(systems.t["customers"].c.id == "C11"))
    with pytest.raises(DeleteGuardError):
        systems.compare()
    assert runs.get(systems.store, f"{FLOW}:compare")["status"] == "failed"
    assert _scratch_left(systems.store) == ([], 0)
    systems.close()


def _scratch_left(store: Store) -> tuple[list[str], int]:
    """The scan tables left in the store, and the doubted keys."""
    scans = [name for name in inspect(store.engine).get_table_names() if name.startswith(SCAN_PREFIX)]
    with store.engine.connect() as conn:
        return scans, conn.execute(select(func.count()).select_from(compare_doubts)).scalar()


def test_a_dry_run_lists_every_planned_change_and_writes_nothing(
    state: Path, crm_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    systems = open_systems(
        state, crm_url, monkeypatch, "{max_delete_share: 1.0, deletes: {customer: delete, order: delete}}"
    )
    _orphan_and_deletes(systems)
    customers, orders = systems.t["customers"], systems.t["orders"]
    systems.run(systems.shop, update(customers).where(customers.c.id == "C02").values(name="Renamed quietly"))
    systems.run(systems.shop, insert(orders).values(id="O77", customer="C03", total=7, updated_at=OLD))
    with systems.crm.connect() as conn:
        before = {
            name: conn.execute(select(func.count()).select_from(systems.t[name])).scalar()
            for name in ("contacts", "deals")
        }
    with systems.store.engine.connect() as conn:
        ledger_before = conn.execute(select(func.count()).select_from(ledger)).scalar()
    report = systems.compare(dry_run=True)
    assert report["dry_run"] and report["status"] == "success"
    assert systems.results() == {
        ("customer", "C02"): ("delayed", "updated", True),
        ("order", "O77"): ("missing", "created", True),
        ("order", "O05"): ("deleted", "removed", True),
        ("customer", "C05"): ("deleted", "removed", True),
        ("customer", "C15"): ("deleted", "removed", True),
        ("customer", "C06"): ("deleted", "quarantined", True),
        ("customer", "C99"): ("target_only", "reported", True),
    }
    plan = Path(report["plan"]).read_text().splitlines()
    assert plan[0] == "entity,key,class,outcome,quiet" and len(plan) == 1 + 7
    assert "customer,C05,deleted,removed,true" in plan
    with systems.crm.connect() as conn:
        assert before == {n: conn.execute(select(func.count()).select_from(systems.t[n])).scalar() for n in before}
        assert (
            conn.execute(select(systems.t["contacts"].c.name).where(systems.t["contacts"].c.ext == "C02")).scalar()
            == "Customer 2"
        )
    with systems.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ledger)).scalar() == ledger_before
    assert queue.list_exceptions(systems.store, flow=FLOW) == []
    assert runs.watermark(systems.store, FLOW) == EVERYTHING.end, "a compare never moves the watermark"
    systems.close()


# --- bad input: a clear error naming the system and the problem, no traceback, no password -------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = truesync(["compare", *args, "-q"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_flow_or_entity_that_does_not_exist(state: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    Systems(state.parent, make_url(f"sqlite:///{state.parent / 'crm.db'}"), monkeypatch, "{}")
    code, said = _cli(capsys, "nope")
    assert code == 1 and said.strip() == "error: unknown flow 'nope': the flows are shop_to_crm"
    code, said = _cli(capsys, FLOW, "--entity", "stock_item")
    assert code == 1 and said.strip() == "error: flow 'shop_to_crm' has no entity stock_item"


def test_an_unreachable_target_is_named_without_its_password(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Systems(state.parent, make_url(f"sqlite:///{state.parent / 'crm.db'}"), monkeypatch, "{}")
    monkeypatch.setenv("AIRFLOW_CONN_T_CRM", f"postgresql+psycopg2://sync:{SECRET}@127.0.0.1:1/crm")
    code, said = _cli(capsys, FLOW)
    assert code == 1 and "error: system 'crm' (postgresql+psycopg2://sync:***@127.0.0.1:1/crm) is unreachable" in said
    assert SECRET not in said and "Traceback" not in said


def test_a_target_table_without_a_unique_key_is_refused(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Systems(state.parent, make_url(f"sqlite:///{state.parent / 'crm.db'}"), monkeypatch, "{}", unique=False)
    code, said = _cli(capsys, FLOW, "--json")
    assert code == 1 and "Traceback" not in said
    assert "error: system 'crm' (sqlite:///" in said
    assert "table 'contacts' has no unique key on its key column ext; a compare needs one" in said


def test_the_command_prints_a_summary_and_the_json_report(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    systems = open_systems(state, make_url(f"sqlite:///{state.parent / 'crm.db'}"), monkeypatch, "{}")
    systems.run(systems.crm, insert(systems.t["contacts"]).values(ext="C99", name="Walk-in", modified_at=OLD))
    code, said = _cli(capsys, FLOW, "--run-id", "cli-compare")
    assert code == 0, said
    assert "compared" in said and "quiet drift in customer: 1 target_only" in said
    assert truesync(["compare", FLOW, "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "compare" and report["entities"]["customer"]["classes"]["target_only"] == 1
    assert report["quiet_drift"]["customer"]["examples"][0]["key"] == "C99"
    systems.close()


def test_the_page_shows_the_counts_the_quiet_drift_and_the_plan_and_the_index_marks_a_compare(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    systems = open_systems(state, make_url(f"sqlite:///{state.parent / 'crm.db'}"), monkeypatch, "{}")
    _orphan_and_deletes(systems)
    report = systems.compare(dry_run=True)
    html, page = page_of(report)
    for entity, body in report["entities"].items():
        assert page.number(entity=entity, count="extracted") == body["extracted"]
        for klass, n in body["classes"].items():
            assert page.number(entity=entity, **{"class": klass, "outcome": None}) == n, (entity, klass)
        for outcome, n in body["outcomes"].items():
            assert page.number(entity=entity, outcome=outcome, **{"class": None}) == n, (entity, outcome)
    quiet = {(e.attrs["data-quiet-entity"], e.attrs["data-quiet-class"]): int(e.attrs["data-quiet-count"])
             for e in page.elements if "data-quiet-class" in e.attrs}  # fmt: skip
    assert quiet == {("customer", "deleted"): 3, ("customer", "target_only"): 1, ("order", "deleted"): 1}
    examples = {e.attrs["data-quiet-key"] for e in page.elements if "data-quiet-key" in e.attrs}
    assert examples == {"C05", "C06", "C15", "C99", "O05"}
    assert "compared = created + updated + unchanged + quarantined + removed + soft_deleted + reported" in html
    (plan,) = [e for e in page.elements if "data-plan" in e.attrs]
    assert (report_html.html_path(FLOW, report["run_id"]).parent / plan.attrs["href"]).exists()

    index = Page(report_html.render_index(systems.store).read_text())
    marked = [e for e in index.elements if e.tag == "tr" and e.attrs.get("data-run") == report["run_id"]]
    assert marked and any(e.attrs.get("data-kind") == "compare" for e in index.elements)
    systems.close()
