"""The set-based bulk paths on SQLite, PostgreSQL and MariaDB (``truesync.support.bulk``).

Values must survive the bulk path exactly (nulls, unicode with COPY's separators in it,
decimals at full scale, timestamps with time zones); a key twice in one write is refused;
a row the database refuses is isolated by bisection while every other row is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Engine, make_url

from truesync.config import EntityMapping
from truesync.connectors.errors import RecordsRejected
from truesync.connectors.sql.system import SqlSystem
from truesync.support.bulk import (
    COPY_FROM_ROWS,
    KEYS_PER_IN,
    DuplicateKeys,
    insert,
    insert_from_select,
    select_by_keys,
    upsert,
    upsert_from_select,
    upsert_mostly_new,
)
from truesync.support.sqldb import open_engine

AWARE = timezone(timedelta(hours=5, minutes=30))
ODD_TEXT = "tab\there, new\nline, back\\slash, \\N, 'quote', \"dq\", ümlaut, 漢字, emoji 🦜, rtl \u202e"


def _table(metadata: MetaData) -> Table:
    return Table(
        "bulk_items",
        metadata,
        Column("item_key", String(40), nullable=False),
        Column("label", String(20)),
        Column("note", Text),
        Column("amount", Numeric(38, 18)),
        Column("day", Date),
        Column("seen_at", DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")),
        Column("count", BigInteger),
        UniqueConstraint("item_key"),
        CheckConstraint("length(label) <= 20", name="label_fits"),  # SQLite keeps any length otherwise
    )


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url: URL = {
        "sqlite": lambda: make_url(f"sqlite:///{tmp_path / 'bulk.db'}"),
        "postgresql": lambda: request.getfixturevalue("postgres_url"),
        "mariadb": lambda: request.getfixturevalue("mysql_url"),
    }[request.param]()
    handle = open_engine(url)
    _table(MetaData()).metadata.create_all(handle)
    yield handle
    handle.dispose()


@pytest.fixture
def table(engine: Engine) -> Table:
    return Table("bulk_items", MetaData(), autoload_with=engine)


def _row(i: int, **values: Any) -> dict[str, Any]:
    return {
        "item_key": f"K{i:06d}",
        "label": f"label {i}",
        "note": None if i % 3 == 0 else f"{ODD_TEXT} #{i}",
        "amount": None if i % 5 == 0 else Decimal(f"{12345678901234567890 + i}.123456789012345678"),
        "day": date(2026, 11, 1) + timedelta(days=i % 30),
        "seen_at": datetime(2026, 11, 1, 12, 30, 15, 123456, tzinfo=AWARE) + timedelta(seconds=i),
        "count": 9_007_199_254_740_993 + i,  # beyond a double's exact integers
        **values,
    }


def _read(engine: Engine, table: Table) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {r["item_key"]: dict(r) for r in conn.execute(select(table)).mappings()}


def _same_instant(stored: datetime | None, sent: datetime) -> bool:
    """MariaDB and SQLite keep no zone: they store the instant as written or as UTC; compare the instant."""
    if stored is None:
        return False
    if stored.tzinfo is None:
        return stored in (sent.replace(tzinfo=None), sent.astimezone(UTC).replace(tzinfo=None))
    return stored == sent


@pytest.mark.parametrize("size", [3, COPY_FROM_ROWS + 250])
def test_values_survive_the_bulk_upsert_exactly(engine: Engine, table: Table, size: int) -> None:
    rows = [_row(i) for i in range(size)]
    with engine.begin() as conn:
        assert upsert(conn, table, rows, ["item_key"], [c for c in rows[0] if c != "item_key"]) == size
    stored = _read(engine, table)
    assert len(stored) == size
    for row in rows:
        got = stored[row["item_key"]]
        assert got["note"] == row["note"] and got["label"] == row["label"] and got["count"] == row["count"]
        assert (got["amount"] is None) == (row["amount"] is None)
        if row["amount"] is not None and engine.dialect.name == "sqlite":  # SQLite keeps NUMERIC as a double
            assert float(got["amount"]) == float(row["amount"])
        elif row["amount"] is not None:
            assert Decimal(str(got["amount"])) == row["amount"]
        assert got["day"] == row["day"] and _same_instant(got["seen_at"], row["seen_at"])


@pytest.mark.parametrize("size", [3, COPY_FROM_ROWS + 250])
def test_a_frame_is_written_column_by_column_with_the_same_values(engine: Engine, table: Table, size: int) -> None:
    """The store's path: a DataFrame (timestamps as datetime64, NaT among them) instead of dicts."""
    rows = [_row(i) for i in range(size)]
    frame = pd.DataFrame(rows, dtype=object)
    seen = pd.Series([r["seen_at"] for r in rows]).dt.tz_convert("UTC")
    frame["seen_at"] = seen.where(pd.Series(range(size)) % 7 != 1)  # some NaT
    with engine.begin() as conn:
        assert upsert(conn, table, frame, ["item_key"], [c for c in frame.columns if c != "item_key"]) == size
    stored = _read(engine, table)
    assert len(stored) == size
    for i, row in enumerate(rows):
        got = stored[row["item_key"]]
        assert got["note"] == row["note"] and got["label"] == row["label"] and got["count"] == row["count"]
        assert got["day"] == row["day"]
        if i % 7 == 1:
            assert got["seen_at"] is None
        else:
            assert _same_instant(got["seen_at"], row["seen_at"].astimezone(UTC))


def test_an_upsert_updates_changed_rows_and_keeps_the_others(engine: Engine, table: Table) -> None:
    rows = [_row(i) for i in range(COPY_FROM_ROWS * 2)]
    updates = [c for c in rows[0] if c != "item_key"]
    with engine.begin() as conn:
        upsert(conn, table, rows, ["item_key"], updates)
    changed = [_row(i, label="moved", note=None) if i % 2 else _row(i) for i in range(COPY_FROM_ROWS * 2 + 10)]
    with engine.begin() as conn:
        upsert(conn, table, changed, ["item_key"], ["label", "note"])
    stored = _read(engine, table)
    assert len(stored) == COPY_FROM_ROWS * 2 + 10
    for i, row in enumerate(changed):
        assert (stored[row["item_key"]]["label"], stored[row["item_key"]]["note"]) == (row["label"], row["note"]), i


def test_a_key_twice_in_one_write_is_refused_before_anything_is_sent(engine: Engine, table: Table) -> None:
    rows = [_row(i) for i in range(COPY_FROM_ROWS + 5)] + [_row(7, label="again")]
    with pytest.raises(DuplicateKeys, match="K000007"), engine.begin() as conn:
        upsert(conn, table, rows, ["item_key"], ["label"])
    assert _read(engine, table) == {}


def test_an_upsert_of_mostly_new_rows_inserts_them_and_merges_when_a_key_exists(engine: Engine, table: Table) -> None:
    """Staging's path: a plain COPY in a savepoint, the merge only when a key was there."""
    first = [_row(i) for i in range(COPY_FROM_ROWS + 20)]
    with engine.begin() as conn:
        assert upsert_mostly_new(conn, table, first, ["item_key"], ["label"]) == len(first)
    again = [_row(i, label="newer") for i in range(10, COPY_FROM_ROWS + 40)]  # 10 keys new, the rest there
    with engine.begin() as conn:
        assert upsert_mostly_new(conn, table, again, ["item_key"], ["label"]) == len(again)
    stored = _read(engine, table)
    assert len(stored) == COPY_FROM_ROWS + 40
    assert {k: r["label"] for k, r in stored.items() if r["label"] != "newer"} == {
        r["item_key"]: r["label"] for r in first[:10]
    }
    twice = [_row(i) for i in range(1000, 1000 + COPY_FROM_ROWS)] + [_row(1000, label="again")]
    with pytest.raises(DuplicateKeys, match="K001000"), engine.begin() as conn:
        upsert_mostly_new(conn, table, twice, ["item_key"], ["label"])
    assert len(_read(engine, table)) == COPY_FROM_ROWS + 40


def test_rows_selected_inside_the_database_are_appended_or_merged_where_a_key_exists(
    engine: Engine, table: Table
) -> None:
    """The compare's ledger path: ``INSERT … SELECT`` with no row in Python, plain when the rows are
    new (rolled back to its savepoint and merged when one is not), merging by key when asked."""
    source = Table("bulk_source", MetaData(), *(Column(c.name, c.type) for c in table.columns))
    source.create(engine)
    with engine.begin() as conn:
        insert(conn, source, [_row(i, label="selected") for i in range(COPY_FROM_ROWS + 20)])
        insert(conn, table, [_row(7, label="there first")])
    everything = select(source).where(source.c.item_key.is_not(None))
    with engine.begin() as conn:
        insert_from_select(conn, table, everything, ["item_key"], ["label"])
    stored = _read(engine, table)
    assert len(stored) == COPY_FROM_ROWS + 20
    assert {r["label"] for r in stored.values()} == {"selected"}, "the key that was there is merged"

    with engine.begin() as conn:
        conn.execute(source.update().where(source.c.item_key.in_(["K000003", "K000030"])).values(label="moved"))
        changed = select(source).where(source.c.label == "moved")
        upsert_from_select(conn, table, changed, ["item_key"], ["label"])
    labels = {k: r["label"] for k, r in _read(engine, table).items() if r["label"] != "selected"}
    assert labels == {"K000003": "moved", "K000030": "moved"}


def test_bulk_insert_appends_every_row(engine: Engine, table: Table) -> None:
    rows = [_row(i) for i in range(COPY_FROM_ROWS + 30)]
    with engine.begin() as conn:
        assert insert(conn, table, rows) == len(rows)
    assert sorted(_read(engine, table)) == sorted(r["item_key"] for r in rows)


def test_keys_are_found_whatever_their_number(engine: Engine, table: Table) -> None:
    rows = [_row(i) for i in range(KEYS_PER_IN + 700)]
    with engine.begin() as conn:
        insert(conn, table, rows)
    wanted = [r["item_key"] for r in rows[::2]] + ["missing"]
    key = table.c.item_key
    with engine.connect() as conn:
        found = [k for (k,) in select_by_keys(conn, select(key), key, wanted)]
        none = select_by_keys(conn, select(key), key, [])
    assert sorted(found) == sorted(wanted[:-1]) and none == []


AWKWARD_KEYS = ['say "hi"', "back\\slash", "{braces}", "a,b", "NULL", " padded ", "", "ümlaut 漢字", ODD_TEXT[:40]]


def test_keys_with_the_separators_of_an_array_literal_are_found_as_written(engine: Engine, table: Table) -> None:
    """PostgreSQL gets the keys as one array literal: quotes, backslashes, braces, commas and the word
    NULL in a key must reach the server as that key, and integers must still use an integer index."""
    rows = [{**_row(i), "item_key": k} for i, k in enumerate(AWKWARD_KEYS)]
    with engine.begin() as conn:
        insert(conn, table, rows)
    key, count = table.c.item_key, table.c["count"]
    with engine.connect() as conn:
        found = [k for (k,) in select_by_keys(conn, select(key), key, [*AWKWARD_KEYS, "say hi"])]
        big = [_row(0)["count"], _row(2)["count"], -1]  # beyond a double's exact integers
        by_number = [n for (n,) in select_by_keys(conn, select(count), count, big)]
    assert sorted(found) == sorted(AWKWARD_KEYS)
    assert sorted(by_number) == big[:2]


def test_rows_the_database_refuses_are_isolated_and_the_rest_loads(engine: Engine) -> None:
    mapping = EntityMapping(table="bulk_items", key="item_key", fields={"key": "item_key", "label": "label"})
    system = SqlSystem("bulkdb", engine.url)
    rows = [{"item_key": f"K{i:06d}", "label": f"label {i}"} for i in range(1000)]
    rows[17]["label"] = "x" * 200  # longer than the column allows
    rows[802]["label"] = "y" * 21
    with pytest.raises(RecordsRejected) as caught:
        system.write(mapping, rows, batch_size=400)
    refused = caught.value.rejected
    assert len(refused) == 2 and all("system 'bulkdb'" in reason for reason in refused.values())
    assert all("x" * 30 not in reason for reason in refused.values()), "the refused value is not repeated"
    stored = Table("bulk_items", MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        written = set(conn.execute(select(stored.c.item_key)).scalars())
    assert written == {r["item_key"] for i, r in enumerate(rows) if i not in (17, 802)}
    system.engine.dispose()


@pytest.mark.parametrize("count", [COPY_FROM_ROWS - 1, 500])
def test_text_a_database_cannot_hold_is_refused_by_row_and_the_rest_loads(engine: Engine, count: int) -> None:
    """PostgreSQL's text cannot hold U+0000 (its driver refuses the parameter, its server the COPY),
    SQLite and MariaDB keep it; no driver can encode a lone surrogate (which a JSON source can
    send). A refused row is named with the reason, and the rest of the batch loads."""
    mapping = EntityMapping(table="bulk_items", key="item_key", fields={"key": "item_key", "note": "note"})
    system = SqlSystem("bulkdb", engine.url)
    rows = [{"item_key": f"K{i:06d}", "note": f"note {i}"} for i in range(count)]
    rows[7]["note"], rows[9]["note"] = "before\x00after", "lone \ud800 surrogate"
    refused: dict[str, str] = {}
    try:
        system.write(mapping, rows, batch_size=1000)
    except RecordsRejected as exc:
        refused = exc.rejected
    stored = Table("bulk_items", MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        notes = dict(conn.execute(select(stored.c.item_key, stored.c.note)).all())
    nul_refused = engine.dialect.name == "postgresql"
    assert sorted(refused) == (["K000007", "K000009"] if nul_refused else ["K000009"])
    assert "surrogate" in refused["K000009"] and (not nul_refused or "0x00" in refused["K000007"])
    assert set(notes) == {r["item_key"] for r in rows} - set(refused)
    assert nul_refused or notes["K000007"] == "before\x00after"
    system.engine.dispose()


@pytest.mark.parametrize("count", [COPY_FROM_ROWS - 1, 500])
def test_a_number_beyond_its_columns_precision_is_refused_by_row_on_every_database(engine: Engine, count: int) -> None:
    """``amount`` is NUMERIC(38, 18): 20 digits before the point. PostgreSQL and MariaDB refuse a
    21st; SQLite enforces no declared type and would keep it as a float, changed, so truesync
    refuses it there the same way. A negative number is measured by its size. (Within its precision
    SQLite still keeps the number as a double, exact to 15 significant digits.)"""
    mapping = EntityMapping(table="bulk_items", key="item_key", fields={"key": "item_key", "amount": "amount"})
    system = SqlSystem("bulkdb", engine.url)
    rows = [{"item_key": f"K{i:06d}", "amount": Decimal(f"{i}.5")} for i in range(count)]
    widest = Decimal("99999999999999999999.999999999999999999")
    rows[3]["amount"], rows[5]["amount"], rows[8]["amount"] = Decimal("1" + "0" * 20), -widest - 1, widest
    with pytest.raises(RecordsRejected) as caught:
        system.write(mapping, rows, batch_size=1000)
    assert sorted(caught.value.rejected) == ["K000003", "K000005"]
    assert all("1000000" not in reason for reason in caught.value.rejected.values()), "no value in the reason"
    stored = Table("bulk_items", MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        amounts = dict(conn.execute(select(stored.c.item_key, stored.c.amount)).all())
    assert set(amounts) == {r["item_key"] for r in rows} - {"K000003", "K000005"}
    kept = amounts["K000008"]
    assert float(kept) == float(widest) if engine.dialect.name == "sqlite" else Decimal(str(kept)) == widest
    system.engine.dispose()


def test_a_target_without_a_unique_key_is_updated_by_key_and_inserted_once(engine: Engine) -> None:
    """No index covers the key (a legacy table): the connector updates rows in place by key, keeps the
    columns it does not write, inserts the rest once, and isolates a refused row like the upsert."""
    loose = Table(
        "loose_items",
        MetaData(),
        *(Column(c.name, c.type) for c in _table(MetaData()).columns),
        Column("kept", String(20)),
        CheckConstraint("length(label) <= 20", name="loose_label_fits"),
    )
    loose.create(engine)
    with engine.begin() as conn:
        conn.execute(loose.insert(), [_row(i, kept=f"own {i}") for i in range(0, 20, 2)])
    system = SqlSystem("loosedb", engine.url)
    mapping = EntityMapping(table="loose_items", key="item_key", fields={"key": "item_key", "label": "label"})
    rows = [_row(i, label=f"new {i}") for i in range(20)]
    rows[5]["label"] = "z" * 30  # longer than the check allows
    rows[7]["amount"] = Decimal("1" + "0" * 20)  # beyond NUMERIC(38, 18), which SQLite does not enforce
    with pytest.raises(RecordsRejected) as caught:
        system.write(mapping, rows, batch_size=8)
    assert sorted(caught.value.rejected) == ["K000005", "K000007"]
    system.write(mapping, [r for i, r in enumerate(rows) if i not in (5, 7)], batch_size=8)  # again: no new row
    with engine.connect() as conn:
        stored = [dict(r) for r in conn.execute(select(loose)).mappings()]
    assert sorted(r["item_key"] for r in stored) == [f"K{i:06d}" for i in range(20) if i not in (5, 7)]
    for got in stored:
        i, sent = int(got["item_key"][1:]), rows[int(got["item_key"][1:])]
        assert got["label"] == f"new {i}" and got["kept"] == (f"own {i}" if i % 2 == 0 else None), got
        assert (got["note"], got["day"], got["count"]) == (sent["note"], sent["day"], sent["count"]), i
        amount = float if engine.dialect.name == "sqlite" else lambda v: Decimal(str(v))  # SQLite: a double
        assert (None if got["amount"] is None else amount(got["amount"])) == (
            None if sent["amount"] is None else amount(sent["amount"])
        ), i
        assert _same_instant(got["seen_at"], sent["seen_at"]), i
    system.engine.dispose()


def test_whether_a_key_column_tells_case_apart_is_asked_of_the_database(engine: Engine) -> None:
    """Per database, a key column that compares without case (MariaDB's default collation, SQLite's
    ``NOCASE``, PostgreSQL's ``citext``) and one that compares exactly."""
    folding, exact = {
        "sqlite": ("VARCHAR(20) COLLATE NOCASE", "VARCHAR(20)"),
        "postgresql": ("citext", "VARCHAR(20)"),
    }.get(engine.dialect.name, ("VARCHAR(20)", "VARCHAR(20) COLLATE utf8mb4_bin"))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS citext")
        conn.exec_driver_sql("DROP TABLE IF EXISTS case_keys")
        conn.exec_driver_sql(f"CREATE TABLE case_keys (folded {folding}, exact {exact})")
    system = SqlSystem("casedb", engine.url)
    try:
        for column, folds in (("folded", True), ("exact", False)):
            mapping = EntityMapping(table="case_keys", key=column, fields={"key": column})
            assert system.folds_case(mapping) is folds, (engine.dialect.name, column)
        composite = EntityMapping(table="case_keys", key=["exact", "folded"], fields={"a": "exact", "b": "folded"})
        assert system.folds_case(composite), "one part that folds case folds the key"
    finally:
        system.engine.dispose()
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE case_keys")
