"""The SQL connector against real databases: SQLite always, PostgreSQL and MariaDB when configured.

Extraction must return every row of the half-open window exactly once, however the chunk
size cuts through rows that tie on the cursor or repeat a (cursor, key) pair; rows with a
null key are streamed too. Lookups by key, dialect upserts and the two kinds of failure
(configuration problem vs. unavailable system) are checked on each dialect.
"""

from __future__ import annotations

import json
import traceback
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, event, func, select
from sqlalchemy.engine import URL, Engine, make_url

from truesync.config import EntityConfig, EntityMapping, FieldSpec
from truesync.connectors.errors import ConfigurationProblem, SystemUnavailable
from truesync.connectors.sql.system import SqlSystem
from truesync.core.canonical import to_canonical
from truesync.support.sqldb import open_engine

START = datetime(2026, 3, 1)
END = datetime(2026, 3, 2)
TIE = START + timedelta(hours=10)
DUP = START + timedelta(hours=12)
BIG = START + timedelta(hours=13)
LARGEST_DUPLICATE_GROUP = 4

EVENTS = EntityMapping(
    table="events", key="ext_key", cursor="updated_at", fields={"id": "ext_key", "label": "label", "amount": "amount"}
)
CONTACTS = EntityMapping(
    table="contacts", key="ext_key", cursor="modified_at", fields={"id": "ext_key", "name": "name", "amount": "amount"}
)
NUMBERED = EntityMapping(table="numbered", key="num", cursor="changed_at", fields={"id": "num", "name": "name"})

# (key, label, cursor): the label identifies each row; keys repeat where the test needs it.
IN_WINDOW: list[tuple[str | None, str, datetime]] = [
    ("k10", "at-start", START),
    *((f"t{i}", f"tie-{i}", TIE) for i in range(1, 8)),  # 7 rows on one timestamp, more than a chunk
    ("c0", "c0", DUP),
    ("d0", "d0", DUP),
    *(("dup", f"dup-{x}", DUP) for x in "abc"),  # a duplicate (cursor, key) pair, 3 rows
    ("e0", "e0", DUP),
    *(("big", f"big-{i}", BIG) for i in range(1, LARGEST_DUPLICATE_GROUP + 1)),  # duplicate group > chunk
    ("m1", "m1-early", START + timedelta(hours=15)),
    ("m1", "m1-late", START + timedelta(hours=16)),  # same key, another time: a second row
    ("z9", "last-second", END - timedelta(seconds=1)),
]
NULL_IN_WINDOW: list[tuple[str | None, str, datetime]] = [
    (None, f"null-{i}", START + timedelta(hours=i)) for i in range(1, 6)
]
OUTSIDE: list[tuple[str | None, str, datetime]] = [
    ("k00", "before", START - timedelta(seconds=1)),
    ("k99", "at-end", END),
    ("k98", "after", END + timedelta(hours=1)),
    (None, "null-outside", START - timedelta(hours=3)),
]

SERVER_PARAMS = {"postgresql": "postgres_url", "mysql": "mysql_url"}


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> URL:
    """A fresh database on each dialect; SQLite always runs, servers when their env var is set."""
    if request.param == "sqlite":
        return make_url(f"sqlite:///{tmp_path / 'system.db'}")
    return request.getfixturevalue(SERVER_PARAMS[request.param])


@pytest.fixture
def engine(db_url: URL) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def shop(db_url: URL, engine: Engine) -> Iterator[SqlSystem]:
    """The system under test, with the source and target tables created and filled."""
    _create_tables(engine)
    system = SqlSystem("shop", db_url)
    yield system
    system.engine.dispose()


def _create_tables(engine: Engine) -> None:
    metadata = MetaData()
    events = Table(
        "events",
        metadata,
        Column("row_id", Integer, primary_key=True, autoincrement=True),
        Column("ext_key", String(20)),
        Column("label", String(40), nullable=False),
        Column("amount", Integer),
        Column("updated_at", DateTime, nullable=False),
        Index("ix_events_cursor", "updated_at", "ext_key"),
    )
    Table(
        "contacts",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("ext_key", String(20), nullable=False, unique=True),
        Column("name", String(50)),
        Column("amount", Integer),
        Column("modified_at", DateTime),
    )
    numbered = Table(
        "numbered",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("num", Integer, nullable=False, unique=True),
        Column("name", String(20)),
        Column("changed_at", DateTime),
    )
    metadata.create_all(engine)
    rows = [*IN_WINDOW, *NULL_IN_WINDOW, *OUTSIDE]
    with engine.begin() as conn:
        # Insert in an order unrelated to (cursor, key), so the database has to sort.
        conn.execute(
            events.insert(),
            [
                {"ext_key": key, "label": label, "amount": i, "updated_at": ts}
                for i, (key, label, ts) in enumerate(reversed(rows))
            ],
        )
        conn.execute(numbered.insert(), [{"num": n, "name": f"n{n}", "changed_at": START} for n in range(1, 6)])


def _labels(rows: list[tuple[str | None, str, datetime]]) -> Counter:
    return Counter(label for _key, label, _ts in rows)


def _extract(system: SqlSystem, size: int, start: datetime = START, end: datetime = END) -> list[pd.DataFrame]:
    return list(system.extract(EVENTS, start, end, size))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 1000])
def test_extract_returns_every_row_of_the_window_exactly_once(shop: SqlSystem, size: int) -> None:
    chunks = _extract(shop, size)
    everything = pd.concat(chunks, ignore_index=True)
    assert Counter(everything["label"]) == _labels(IN_WINDOW)
    assert set(everything.columns) == {"ext_key", "label", "amount", "updated_at"}


def test_extract_with_chunk_smaller_than_a_tie_group_and_duplicates_across_the_boundary(shop: SqlSystem) -> None:
    chunks = _extract(shop, 3)
    assert len(chunks) > 3, "the window must really be paged"
    labels = Counter(label for chunk in chunks for label in chunk["label"])
    assert {label: n for label, n in labels.items() if n != 1} == {}
    for name in [*(f"tie-{i}" for i in range(1, 8)), "dup-a", "dup-b", "dup-c", "big-1", "big-2", "big-3", "big-4"]:
        assert labels[name] == 1, name
    # A duplicate (cursor, key) group always travels in one chunk, whole.
    for group in ("dup-", "big-"):
        holding = [i for i, chunk in enumerate(chunks) if chunk["label"].str.startswith(group).any()]
        assert len(holding) == 1, f"{group} rows spread over chunks {holding}"
    # Memory stays bounded: a chunk exceeds the size only by the rest of one duplicate group.
    assert max(len(chunk) for chunk in chunks) <= 3 + LARGEST_DUPLICATE_GROUP - 1


PAGED_ROWS, PAGE = 6_000, 500


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_page_of_the_window_reads_its_own_rows_not_those_of_the_pages_before(
    request: pytest.FixtureRequest, dialect: str
) -> None:
    """Each page's index scan starts at the page's start. A page that reads the window from its start
    and filters out the rows of the pages before makes paging cost the square of the window (on
    PostgreSQL a 1.5M-row initial load spent 100 s so)."""
    url = request.getfixturevalue(SERVER_PARAMS[dialect])
    engine = open_engine(url)
    events = Table("events", MetaData(), Column("id", Integer, primary_key=True), Column("ext_key", String(20)),
                   Column("label", String(40)), Column("amount", Integer), Column("updated_at", DateTime),
                   Index("ix_paged", "updated_at", "ext_key"))  # fmt: skip
    events.create(engine)
    with engine.begin() as conn:
        rows = [{"id": i + 1, "ext_key": f"k{i:05d}", "label": "x", "amount": i,
                 "updated_at": START + timedelta(seconds=i)} for i in range(PAGED_ROWS)]  # fmt: skip
        conn.execute(events.insert(), rows)
        conn.exec_driver_sql("ANALYZE events" if dialect == "postgresql" else "ANALYZE TABLE events")
    system = SqlSystem("shop", url)
    sent: list[tuple[str, Any]] = []
    event.listen(system.engine, "before_cursor_execute", lambda *args: sent.append((args[2], args[3])))
    assert sum(len(chunk) for chunk in system.extract(EVENTS, START, END, PAGE)) == PAGED_ROWS
    pages = [(statement, parameters) for statement, parameters in sent if "LIMIT" in statement.upper()]
    assert len(pages) == PAGED_ROWS // PAGE + 1
    with engine.connect() as conn:
        read = _rows_read(conn, dialect, *pages[-2])  # the last full page, after all the others
    system.engine.dispose()
    engine.dispose()
    assert read <= PAGE + 1, f"the page read {read} rows to return {PAGE}"


def _rows_read(conn: Any, dialect: str, statement: str, parameters: Any) -> int:
    """Rows the database's table scans read for ``statement``, returned or filtered out, by its own count.

    PostgreSQL is held to the plan it picks for a large table (a scan of the index in the order
    asked, stopping at the limit); on a small one it may sort what a bitmap found instead.
    """
    explain = "EXPLAIN (ANALYZE, FORMAT JSON) " if dialect == "postgresql" else "ANALYZE FORMAT=JSON "
    if dialect == "postgresql":
        for planner in ("enable_bitmapscan", "enable_seqscan", "enable_sort"):
            conn.exec_driver_sql(f"SET {planner} = off")
    plan = conn.exec_driver_sql(explain + statement, parameters).scalar()
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def nodes(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            yield node
            node = list(node.values())
        if isinstance(node, list):
            for child in node:
                yield from nodes(child)

    if dialect == "postgresql":
        scans = [n for n in nodes(plan) if "Relation Name" in n]  # reads of the table (a bitmap's index read: no)
        return sum(n["Actual Rows"] + n.get("Rows Removed by Filter", 0) for n in scans)
    return sum(int(n["r_rows"]) for n in nodes(plan) if "table_name" in n)


def test_extract_excludes_rows_outside_the_half_open_window(shop: SqlSystem) -> None:
    labels = set(pd.concat(_extract(shop, 2), ignore_index=True)["label"])
    assert "at-start" in labels and "last-second" in labels
    assert labels.isdisjoint(_labels(OUTSIDE))


def test_extract_orders_keyed_rows_by_cursor_then_key(shop: SqlSystem) -> None:
    keyed = pd.concat(_extract(shop, 3), ignore_index=True)
    assert keyed["ext_key"].notna().all(), "rows without a key are read by unwindowed_rows, not by the window"
    order = list(zip(keyed["updated_at"], keyed["ext_key"], strict=True))
    assert order == sorted(order)
    assert all(isinstance(ts, datetime) for ts in keyed["updated_at"])


def test_unwindowed_rows_are_all_streamed_in_chunks_of_the_size_whatever_their_time(shop: SqlSystem) -> None:
    null_chunks = list(shop.unwindowed_rows(EVENTS, 2))
    assert sorted(len(c) for c in null_chunks) == [2, 2, 2]
    assert all(c["ext_key"].isna().all() for c in null_chunks)
    everything = _labels(NULL_IN_WINDOW) + Counter(label for key, label, _ in OUTSIDE if key is None)
    assert Counter(label for c in null_chunks for label in c["label"]) == everything


def test_extract_of_an_empty_window_yields_no_rows(shop: SqlSystem) -> None:
    chunks = _extract(shop, 3, datetime(2030, 1, 1), datetime(2030, 1, 2))
    assert sum(len(c) for c in chunks) == 0


def test_fetch_by_keys_returns_every_row_of_those_keys(shop: SqlSystem) -> None:
    frame = shop.fetch(EVENTS, ["t3", "dup", "k00", "no-such-key"])
    assert Counter(frame["label"]) == Counter(["tie-3", "dup-a", "dup-b", "dup-c", "before"])
    assert shop.fetch(EVENTS, []).empty


def test_fetch_by_text_keys_on_an_integer_key_column(shop: SqlSystem) -> None:
    frame = shop.fetch(NUMBERED, ["1", "3", "42"])
    assert sorted(frame["name"]) == ["n1", "n3"]


def test_fetch_by_another_column_finds_rows_by_that_reference(shop: SqlSystem) -> None:
    frame = shop.fetch_by(EVENTS, "label", ["tie-3", "dup-b", "no-such-label"])
    assert sorted(frame["ext_key"]) == ["dup", "t3"] and list(frame.columns).count("label") == 1
    with pytest.raises(ConfigurationProblem, match="no column colour"):
        shop.fetch_by(EVENTS, "colour", ["red"])


def _contacts(engine: Engine) -> dict[str, dict[str, Any]]:
    table = Table("contacts", MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return {row.ext_key: dict(row._mapping) for row in conn.execute(select(table))}


def test_write_inserts_then_updates_by_key(shop: SqlSystem, engine: Engine) -> None:
    t0 = START
    first = [{"ext_key": k, "name": f"name {k}", "amount": i, "modified_at": t0} for i, k in enumerate("abc")]
    assert shop.write(CONTACTS, first, batch_size=2) == 3
    before = _contacts(engine)
    assert sorted(before) == ["a", "b", "c"]

    t1 = t0 + timedelta(hours=1)
    second = [
        {"ext_key": "a", "name": "Ann renamed", "amount": 10, "modified_at": t1},
        {"ext_key": "d", "name": "new d", "amount": 4, "modified_at": t1},
    ]
    assert shop.write(CONTACTS, second, batch_size=1) == 2
    after = _contacts(engine)
    assert sorted(after) == ["a", "b", "c", "d"]
    assert (after["a"]["name"], after["a"]["amount"], after["a"]["modified_at"]) == ("Ann renamed", 10, t1)
    assert after["a"]["id"] == before["a"]["id"], "an update keeps the target's own row id"
    assert after["b"] == before["b"] and after["c"] == before["c"]

    # Writing the same rows again changes nothing and adds nothing.
    assert shop.write(CONTACTS, second, batch_size=1000) == 2
    assert _contacts(engine) == after
    table = Table("contacts", MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(table)).scalar() == 4


def test_write_updates_only_the_columns_it_is_given(shop: SqlSystem, engine: Engine) -> None:
    shop.write(CONTACTS, [{"ext_key": "b", "name": "Bob", "amount": 7, "modified_at": START}], batch_size=10)
    shop.write(CONTACTS, [{"ext_key": "b", "name": "Bobby"}], batch_size=10)
    row = _contacts(engine)["b"]
    assert (row["name"], row["amount"], row["modified_at"]) == ("Bobby", 7, START)


def test_write_of_nothing_is_a_no_op(shop: SqlSystem, engine: Engine) -> None:
    assert shop.write(CONTACTS, [], batch_size=10) == 0
    assert _contacts(engine) == {}


@pytest.mark.parametrize(
    ("mapping", "names"),
    [
        (EVENTS.model_copy(update={"table": "no_such_table"}), ["no_such_table"]),
        (EVENTS.model_copy(update={"fields": {"id": "ext_key", "label": "lable"}}), ["events", "lable"]),
        (EVENTS.model_copy(update={"cursor": "changed"}), ["events", "changed"]),
        (EVENTS.model_copy(update={"key": "sku", "fields": {"id": "sku"}}), ["events", "sku"]),
    ],
    ids=["missing-table", "missing-column", "missing-cursor", "missing-key"],
)
def test_configuration_problems_name_the_system_and_what_is_missing(
    shop: SqlSystem, mapping: EntityMapping, names: list[str]
) -> None:
    calls = {
        "extract": lambda: list(shop.extract(mapping, START, END, 3)),
        "fetch": lambda: shop.fetch(mapping, ["k10"]),
        "write": lambda: shop.write(mapping, [{"ext_key": "x"}], 10),
    }
    for call, run in calls.items():
        with pytest.raises(ConfigurationProblem) as info:
            run()
        message = str(info.value)
        assert "system 'shop'" in message, call
        for name in names:
            assert f"'{name}'" in message or name in message.split(), (call, message)


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg2://user:secretpw@127.0.0.1:1/db", "mysql+pymysql://user:secretpw@127.0.0.1:1/db"],
    ids=["postgresql", "mysql"],
)
def test_unreachable_server_is_unavailable_and_never_shows_the_password(url: str) -> None:
    system = SqlSystem("shop", make_url(url))
    calls = {
        "extract": lambda: list(system.extract(EVENTS, START, END, 3)),
        "fetch": lambda: system.fetch(EVENTS, ["k10"]),
        "write": lambda: system.write(CONTACTS, [{"ext_key": "x", "name": "y"}], 10),
    }
    try:
        for call, run in calls.items():
            with pytest.raises(SystemUnavailable) as info:
                run()
            message = str(info.value)
            assert "shop" in message and "127.0.0.1" in message, call
            assert "secretpw" not in message, call
            assert "secretpw" not in "".join(traceback.format_exception(info.value)), call
            assert "secretpw" not in system.describe()
    finally:
        system.engine.dispose()


def test_columns_are_every_column_of_the_table_with_the_python_type_it_takes(shop: SqlSystem) -> None:
    assert shop.columns(NUMBERED) == {"id": int, "num": int, "name": str, "changed_at": datetime}


def _one_column_mapped(url: URL, table: str, column: str, declared: str, rows: str, spec: FieldSpec) -> Any:
    """A table ``(sku, <column> <declared>, changed_at)`` holding ``rows`` (SQL row literals), fetched in
    key order through ``SqlSystem`` and mapped to canonical with ``spec`` for the column's field."""
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (sku text PRIMARY KEY, {column} {declared}, changed_at timestamp)")
        conn.exec_driver_sql(f"INSERT INTO {table} VALUES {rows}")
        keys = [key for (key,) in conn.exec_driver_sql(f"SELECT sku FROM {table}")]
    engine.dispose()
    mapping = EntityMapping(table=table, key="sku", cursor="changed_at", fields={"sku": "sku", column: column})
    entity = EntityConfig(key="sku", fields={"sku": FieldSpec(), column: spec})
    system = SqlSystem(table, url)
    raw = system.fetch(mapping, keys).sort_values("sku", ignore_index=True)
    system.engine.dispose()
    return to_canonical(raw, mapping, entity, ["sku", column])


def test_a_numeric_nan_read_from_postgresql_is_refused_by_the_mapping_not_carried_as_a_null(postgres_url: URL) -> None:
    """PostgreSQL's ``numeric`` holds ``NaN``, which psycopg2 reads as ``Decimal('NaN')`` and pandas counts as
    missing: the record must be held as not a number, beside a real null and a number that load."""
    rows = "('a', 1.50, '2026-03-01 10:00'), ('b', 'NaN', '2026-03-01 10:00'), ('c', NULL, '2026-03-01 10:00')"
    canon = _one_column_mapped(
        postgres_url, "prices", "price", "numeric(12, 2)", rows, FieldSpec(type="decimal", scale=2)
    )
    assert canon.records["price"].tolist() == ["1.50", None, None]
    assert canon.errors.to_dict("records") == [
        {"check_name": "valid_decimal", "field": "price", "reason": "cannot read column 'price' as decimal: 'NaN'",
         "value": "NaN"}
    ]  # fmt: skip
    assert canon.errors.index.tolist() == [1]


def test_a_double_precision_nan_read_from_postgresql_is_refused_never_carried_as_a_null(postgres_url: URL) -> None:
    """A ``double precision`` column holds ``NaN`` and infinities, which psycopg2 reads as floats; pandas
    counts the NaN as missing. In a decimal field both are held as not a number, beside a real null."""
    rows = ", ".join(
        f"('{key}', {value}, '2026-03-01')"
        for key, value in zip("abcd", ["0.25", "'NaN'", "NULL", "'-Infinity'"], strict=True)
    )
    canon = _one_column_mapped(
        postgres_url, "rates", "rate", "double precision", rows, FieldSpec(type="decimal", scale=4)
    )
    assert canon.records["rate"].tolist() == ["0.2500", None, None, None]
    assert canon.errors["reason"].tolist() == [
        "cannot read column 'rate' as decimal: 'NaN'",
        "cannot read column 'rate' as decimal: '-inf'",
    ]
    assert canon.errors.index.tolist() == [1, 3]


# A date or time Python cannot hold, as each database keeps it: PostgreSQL takes years up to 294276
# and before Christ, SQLite any text in a DATE column. id -> (born, seen_at, changed_at).
BEYOND_PYTHON = {
    "postgresql": {
        "year-5-digits": ("19850-01-01", "2026-01-01 10:00", "2026-03-01 10:00"),
        "before-christ": ("0044-03-15 BC", "2026-01-01 10:00", "2026-03-01 10:00"),
        "seen-5-digits": ("1985-01-01", "20260-01-01 10:00:00", "2026-03-01 10:00"),
    },
    "sqlite": {
        "year-5-digits": ("19850-01-01", "2026-01-01 10:00:00.000000", "2026-03-01 10:00:00.000000"),
        "no-such-day": ("1985-02-31", "2026-01-01 10:00:00.000000", "2026-03-01 10:00:00.000000"),
        "seen-garbage": ("1985-01-01", "later", "2026-03-01 10:00:00.000000"),
        "changed-hour-25": ("1985-01-01", "2026-01-01 10:00:00.000000", "2026-03-01 25:00:00"),
    },
}
READABLE = {"good": ("1985-01-01", "2026-01-01 10:00", "2026-03-01 10:00"), "none": (None, None, "2026-03-01 10:00")}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_date_python_cannot_hold_is_read_as_its_text_and_refused_alone(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """psycopg2 and SQLAlchemy's SQLite types fail a whole query on one such value ("year 19850 is out of
    range"): it comes as the database's text instead, so extraction and lookups read every row and
    the mapping refuses only that record, naming its column and value (``support/sqldb.py``)."""
    url = (
        make_url(f"sqlite:///{tmp_path / 'people.db'}")
        if dialect == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    written = {**BEYOND_PYTHON[dialect], **READABLE}
    if dialect == "sqlite":  # readable times as SQLAlchemy writes them, so the window compares them as text
        written |= {k: (b, s and s + ":00.000000", c + ":00.000000") for k, (b, s, c) in READABLE.items()}
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE people (id varchar(20) PRIMARY KEY, born date, seen_at timestamp, changed_at timestamp)"
        )
        for key, values in written.items():
            conn.exec_driver_sql(
                f"INSERT INTO people VALUES ('{key}', {', '.join('NULL' if v is None else repr(v) for v in values)})"
            )
    engine.dispose()
    fields = {"id": "id", "born": "born", "seen_at": "seen_at"}
    mapping = EntityMapping(table="people", key="id", cursor="changed_at", fields=fields)
    entity = EntityConfig(key="id", fields={"id": FieldSpec(), "born": FieldSpec(type="date"),
                                            "seen_at": FieldSpec(type="datetime")})  # fmt: skip
    system = SqlSystem("people", url)
    fetched = system.fetch(mapping, list(written)).set_index("id", drop=False)
    pages = list(system.extract(mapping, datetime(2026, 3, 1), datetime(2026, 3, 2), 1))  # past a text cursor too
    system.engine.dispose()
    assert sorted(fetched.index) == sorted(written) and sorted(k for p in pages for k in p["id"]) == sorted(written)
    canon = to_canonical(fetched, mapping, entity, ["id", "born", "seen_at"])
    refused = dict(zip(canon.errors.index, canon.errors["reason"], strict=True))
    expected = {key: f"cannot read column 'born' as date: '{values[0]}'" for key, values in written.items()
                if key in BEYOND_PYTHON[dialect] and not key.startswith(("seen", "changed"))}  # fmt: skip
    expected |= {key: f"cannot read column 'seen_at' as datetime: '{values[1]}'" for key, values in written.items()
                 if key.startswith("seen")}  # fmt: skip
    assert refused == expected
    assert canon.records.loc["good", "born"] == "1985-01-01" and canon.records.loc["none", "born"] is None
    unread_ts = {key for key, ts in zip(fetched.index, canon.source_ts, strict=True) if pd.isna(ts)}
    assert unread_ts == ({"changed-hour-25"} if dialect == "sqlite" else set())  # extract holds it: valid_datetime


def test_sqlite_keeps_any_value_in_any_column_and_each_is_read_as_its_field_reads_it(tmp_path: Any) -> None:
    """SQLite stores ``'false'`` in a ``BOOLEAN`` and ``abc`` in a ``NUMERIC`` as written. SQLAlchemy read every
    boolean but 0 as true (``'false'`` and ``'no'`` too: a quiet corruption) and failed the whole read
    on the text number. Now a boolean is read as stored and the mapping reads it; the text number is
    read as stored and refused alone (``support/sqldb.py``)."""
    url = make_url(f"sqlite:///{tmp_path / 'flags.db'}")
    engine = open_engine(url)
    stored = {"one": (1, "1.50"), "zero": (0, "2"), "word-false": ("false", "3"), "word-no": ("no", "4"),
              "word-yes": ("yes", "5"), "two": (2, "6"), "text-number": (1, "abc"), "null": (None, None)}  # fmt: skip
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE flags (id varchar(20) PRIMARY KEY, active boolean, price numeric(12, 2))")
        conn.exec_driver_sql("INSERT INTO flags VALUES " + ", ".join("(?, ?, ?)" for _ in stored),
                             tuple(v for key, (flag, price) in stored.items() for v in (key, flag, price)))  # fmt: skip
    engine.dispose()
    mapping = EntityMapping(table="flags", key="id", fields={"id": "id", "active": "active", "price": "price"})
    entity = EntityConfig(key="id", fields={"id": FieldSpec(), "active": FieldSpec(type="boolean"),
                                            "price": FieldSpec(type="decimal", scale=2)})  # fmt: skip
    system = SqlSystem("flags", url)
    raw = system.fetch(mapping, list(stored)).set_index("id", drop=False)
    system.engine.dispose()
    canon = to_canonical(raw, mapping, entity, ["id", "active", "price"])
    read = canon.records.set_index("id")["active"].to_dict()
    assert read == {"one": "true", "zero": "false", "word-false": "false", "word-no": "false", "word-yes": "true",
                    "two": None, "text-number": "true", "null": None}  # fmt: skip
    assert dict(zip(canon.errors.index, canon.errors["reason"], strict=True)) == {
        "two": "cannot read column 'active' as boolean: '2'",
        "text-number": "cannot read column 'price' as decimal: 'abc'",
    }
    assert canon.records.set_index("id")["price"].to_dict()["one"] == "1.50"
