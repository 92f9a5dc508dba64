"""``COPY`` text from one PostgreSQL database into another through this process (``support.copy_stream``):
every value arrives as it left, blocks stay whole lines, and a failure on either end keeps nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest
from conftest import ServerDatabases
from sqlalchemy import BigInteger, Column, DateTime, MetaData, Numeric, Table, Text, insert, select, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError

from truesync.store import Store
from truesync.store import compare as compared
from truesync.support.copy_stream import THREAD, copy_in, copy_out
from truesync.support.sqldb import open_engine

ROWS = [
    (1, "plain", datetime(2026, 11, 1, 9, 30, 0, 123456), Decimal("12.30")),
    (2, "tab\there, line\nbreak, carriage\rreturn", datetime(2026, 11, 1), Decimal("-0.01")),
    (3, "back\\slash \\N and \\t spelled", None, None),
    (4, "", datetime(1, 1, 1), Decimal("9999999999999.99")),
    (5, None, datetime(9999, 12, 31, 23, 59, 59, 999999), Decimal(0)),
    (6, "Zürich € 東京 🙂", datetime(2026, 2, 28, 23, 59), Decimal("0.5")),
]


def _table(metadata: MetaData) -> Table:
    return Table(
        "things",
        metadata,
        Column("id", BigInteger, primary_key=True),
        Column("note", Text),
        Column("at", DateTime),
        Column("amount", Numeric(15, 2)),
    )


@pytest.fixture
def ends(postgres_databases: ServerDatabases) -> Iterator[tuple[Engine, Engine, Table]]:
    """A source database holding ``ROWS`` and many plain rows, and an empty target of the same table."""
    engines = open_engine(postgres_databases.new()), open_engine(postgres_databases.new())
    metadata = MetaData()
    table = _table(metadata)
    for engine in engines:
        metadata.create_all(engine)
    many = [{"id": n, "note": f"row {n}", "at": datetime(2026, 1, 1), "amount": Decimal(n)} for n in range(10, 5010)]
    with engines[0].begin() as conn:
        conn.execute(insert(table), [dict(zip(["id", "note", "at", "amount"], row, strict=True)) for row in ROWS])
        conn.execute(insert(table), many)
    yield engines[0], engines[1], table
    for engine in engines:
        engine.dispose()


def _rows(engine: Engine, table: Table) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(table).order_by(table.c.id))]


def test_every_value_arrives_as_it_left_in_blocks_of_whole_lines(ends: tuple[Engine, Engine, Table]) -> None:
    source, target, table = ends
    blocks = list(copy_out(source, "SELECT id, note, at, amount FROM things", block=256))
    assert len(blocks) > 100 and all(block.endswith(b"\n") for block in blocks)
    with target.begin() as conn:
        assert copy_in(conn, table, ["id", "note", "at", "amount"], iter(blocks)) == len(ROWS) + 5000
    assert _rows(target, table) == _rows(source, table)
    assert _rows(target, table)[: len(ROWS)] == ROWS


def test_a_source_that_fails_midway_fails_the_copy_and_the_target_keeps_nothing(
    ends: tuple[Engine, Engine, Table],
) -> None:
    source, target, table = ends
    failing = "SELECT id, note, at, amount FROM things WHERE 1 / (id - 4000) <> 0 ORDER BY id"
    with pytest.raises(DBAPIError, match="division by zero"), target.begin() as conn:
        copy_in(conn, table, ["id", "note", "at", "amount"], copy_out(source, failing, block=256))
    assert _rows(target, table) == []
    with source.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM things")).scalar() == len(ROWS) + 5000, "the source still serves"


def test_a_reader_that_stops_early_cuts_the_copy_short_and_the_source_serves_on(
    ends: tuple[Engine, Engine, Table],
) -> None:
    source, _, table = ends
    blocks = copy_out(source, "SELECT id, note FROM things", block=64)
    first = next(blocks)
    blocks.close()  # the reader thread ends; its connection is dropped, not pooled mid-COPY
    assert first.startswith(b"1\tplain\n")
    again = b"".join(copy_out(source, "SELECT id FROM things ORDER BY id"))
    assert again.count(b"\n") == len(ROWS) + 5000
    with source.connect() as conn:
        assert conn.execute(select(table.c.note).where(table.c.id == 6)).scalar() == "Zürich € 東京 🙂"


def test_a_store_that_refuses_the_lines_stops_the_source_and_keeps_nothing(
    ends: tuple[Engine, Engine, Table], postgres_url: URL
) -> None:
    """``store.compare.copy_keys``: the store refuses the first line (no time in the time column), so its
    transaction keeps nothing, and the source's reader is not left running."""
    source, _, _ = ends
    store = Store(postgres_url)
    compared.clear(store, "compare__1", "thing")
    lines = copy_out(source, "SELECT id, 'not a time', 'md5:x' FROM things", block=64)
    with pytest.raises(DBAPIError, match="timestamp"):
        compared.copy_keys(store, "compare__1", "thing", compared.SOURCE, lines)
    assert not [t for t in threading.enumerate() if t.name == THREAD and t.is_alive()]
    assert compared.side_count(store, "compare__1", "thing", compared.SOURCE) == 0
    store.engine.dispose()
