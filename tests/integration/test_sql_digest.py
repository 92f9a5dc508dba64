"""Digests (``connectors.sql.digest``): each row's MD5 over its columns' text, spelled so no two rows share one.

On PostgreSQL and MariaDB (when their servers are configured) the digest a SQL system gives
must be exactly the MD5 of the spelling ``docs/design.md`` states ("Digests"), computed here in
Python from the same values' text, so both databases give the same digest for the same values.
SQLite has no hash function, so it gives none. On PostgreSQL, where the key column's text is the
canonical key, the digests can also be spelled as ``COPY`` text for a PostgreSQL store.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import BigInteger, Column, Date, DateTime, Integer, MetaData, Numeric, String, Table, insert, update
from sqlalchemy.engine import URL, make_url

from truesync.config import EntityMapping
from truesync.connectors.base import DIGEST_COLUMN, CopiesDigests, ScansDigests
from truesync.connectors.sql.system import SqlSystem
from truesync.core.canonical import to_utc_naive
from truesync.support.sqldb import open_engine

MAPPING = EntityMapping(
    table="things",
    key="id",
    cursor="changed",
    fields={"thing_id": "id", "a": "a", "b": "b", "amount": "amount", "day": "day"},
)
CHANGED = datetime(2026, 11, 1, 9, 30)
# id -> (a, b, amount, day), with the text each database spells the values in
ROWS = {
    1: ("ab", None, Decimal("12.50"), date(2026, 1, 2)),
    2: (None, "ab", Decimal("12.50"), date(2026, 1, 2)),  # the same text in the other column
    3: ("a", "b", Decimal("12.50"), date(2026, 1, 2)),  # the same text split otherwise
    4: ("a:b", "", Decimal("-0.05"), None),  # a colon in the text; empty is not null
    5: ("", "a:b", Decimal("-0.05"), None),
    6: ("Zürich €", "~", Decimal("0.00"), date(1999, 12, 31)),  # characters, not bytes; a tilde is not null
    7: ("ab", None, Decimal("12.50"), date(2026, 1, 2)),  # as row 1
}
TEXT = {Decimal("12.50"): "12.50", Decimal("-0.05"): "-0.05", Decimal("0.00"): "0.00"}


def spelled(values: tuple[object, ...], plain: tuple[bool, ...] = (False,) * 4) -> str:
    """The digest ``docs/design.md`` states: MD5 of each column as ``<length>:<text>``, or ``<text>|`` where
    ``plain``, or ``~`` when null."""
    texts = [None if v is None else TEXT.get(v, str(v)) for v in values]  # type: ignore[call-overload]
    parts = ["~" if t is None else f"{t}|" if bare else f"{len(t)}:{t}" for t, bare in zip(texts, plain, strict=True)]
    return hashlib.md5("".join(parts).encode()).hexdigest()


@pytest.fixture(params=["postgresql", "mysql"])
def system(request: pytest.FixtureRequest) -> SqlSystem:
    url: URL = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mysql_url")
    table = Table(
        "things", MetaData(), Column("id", Integer, primary_key=True), Column("a", String(20)),
        Column("b", String(20)), Column("amount", Numeric(10, 2)), Column("day", Date), Column("changed", DateTime),
    )  # fmt: skip
    engine = open_engine(url)
    table.metadata.create_all(engine)
    rows = [
        dict(zip(("a", "b", "amount", "day"), v, strict=True)) | {"id": k, "changed": CHANGED} for k, v in ROWS.items()
    ]
    with engine.begin() as conn:
        conn.execute(insert(table), rows)
    engine.dispose()
    return SqlSystem("things", url)


def test_a_digest_is_the_md5_of_each_columns_length_and_text(system: SqlSystem) -> None:
    assert isinstance(system, ScansDigests) and system.gives_digests()
    frames = list(system.scan_digests(MAPPING, ["a", "b", "amount", "day"], 3))
    assert [len(f) for f in frames] == [3, 3, 1], "streamed in frames of the given size"
    found = pd.concat(frames).set_index("id")
    assert list(found.columns) == ["changed", DIGEST_COLUMN], "the key, the cursor and the digest, nothing else"
    assert set(found["changed"]) == {CHANGED}
    assert found[DIGEST_COLUMN].to_dict() == {k: spelled(v) for k, v in ROWS.items()}
    assert found[DIGEST_COLUMN].nunique() == 6, "only rows 1 and 7 hold the same values"


def test_number_date_and_time_columns_are_plain_and_spelled_as_their_text_and_a_bar(system: SqlSystem) -> None:
    """Their text never holds a ``|`` nor starts with ``~``, so the spelling still reads back in one way only."""
    assert system.plain_columns(MAPPING, ["id", "a", "b", "amount", "day", "changed"]) == {
        "id",
        "amount",
        "day",
        "changed",
    }
    found = pd.concat(system.scan_digests(MAPPING, ["a", "b", "amount", "day"], 10, plain={"amount", "day"}))
    expected = {k: spelled(v, (False, False, True, True)) for k, v in ROWS.items()}
    assert found.set_index("id")[DIGEST_COLUMN].to_dict() == expected
    assert found[DIGEST_COLUMN].nunique() == 6, "only rows 1 and 7 hold the same values"


def test_a_scan_of_digests_leaves_out_the_rows_a_soft_delete_marks(system: SqlSystem) -> None:
    live = pd.concat(system.scan_digests(MAPPING, ["a"], 10, ("b", "ab")))
    assert sorted(live["id"]) == [1, 3, 4, 5, 6, 7]


def test_sqlite_gives_no_digests(tmp_path: Path) -> None:
    assert not SqlSystem("things", make_url(f"sqlite:///{tmp_path / 'things.db'}")).gives_digests()


def test_copied_digests_are_the_scanned_ones_with_the_change_time_in_utc(postgres_url: URL) -> None:
    """``copy_digests`` spells what ``scan_digests`` gives once mapped: the key's text, the change time as
    naive UTC whatever the session's time zone, and the prefixed digest; soft-deleted rows left out."""
    engine = open_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE \"{postgres_url.database}\" SET timezone = 'America/New_York'")
    table = Table(
        "things", MetaData(), Column("id", BigInteger, primary_key=True), Column("a", String(20)),
        Column("b", String(20)), Column("amount", Numeric(10, 2)), Column("day", Date),
        Column("changed", DateTime(timezone=True)),
    )  # fmt: skip
    table.metadata.create_all(engine)
    zurich = timezone(timedelta(hours=1))
    rows = [
        dict(zip(("a", "b", "amount", "day"), v, strict=True))
        | {"id": k, "changed": None if k == 5 else datetime(2026, 11, 1, 9, 30, k, 250 * k, tzinfo=zurich)}
        for k, v in ROWS.items()
    ]
    with engine.begin() as conn:
        conn.execute(insert(table), rows)
        conn.execute(update(table).where(table.c.id == 2).values(b="50%"))  # COPY takes '%' as itself
    engine.dispose()
    system, columns = SqlSystem("things", postgres_url), ["a", "b", "amount", "day"]
    assert isinstance(system, CopiesDigests) and system.copies_digests(MAPPING)

    lines = b"".join(system.copy_digests(MAPPING, columns, None, "md5:")).decode().splitlines()

    copied = {(key, None if ts == "\\N" else pd.Timestamp(ts), digest) for key, ts, digest in map(_fields, lines)}
    scanned = pd.concat(system.scan_digests(MAPPING, columns, 10))
    times = to_utc_naive(scanned["changed"])
    expected = {
        (str(k), None if pd.isna(t) else t, f"md5:{d}")
        for k, t, d in zip(scanned["id"], times, scanned[DIGEST_COLUMN], strict=True)
    }
    assert copied == expected and len(lines) == len(ROWS)
    assert ("3", pd.Timestamp("2026-11-01 08:30:03.00075"), f"md5:{spelled(ROWS[3])}") in copied, "09:30 Zürich"
    plain = b"".join(system.copy_digests(MAPPING, columns, None, "md5:", plain={"amount"})).decode().splitlines()
    assert f"md5:{spelled(ROWS[3], (False, False, True, False))}" in {line.split("\t")[2] for line in plain}
    live = b"".join(system.copy_digests(MAPPING, ["a"], ("b", "50%"), "md5:")).decode().splitlines()
    assert sorted(int(line.split("\t")[0]) for line in live) == [1, 3, 4, 5, 6, 7]


def test_only_a_whole_number_key_held_once_with_a_date_or_time_cursor_on_postgresql_is_copied(
    system: SqlSystem, postgres_url: URL
) -> None:
    """Anything else is scanned and mapped in Python, which knows every key type and checks each key."""
    assert system.copies_digests(MAPPING) == (system.engine.dialect.name == "postgresql")
    engine, metadata = open_engine(postgres_url), MetaData()
    Table("text_key", metadata, Column("id", String(20), primary_key=True), Column("changed", DateTime))
    Table("text_time", metadata, Column("id", Integer, primary_key=True), Column("changed", String(30)))
    Table("not_unique", metadata, Column("id", Integer), Column("changed", DateTime))
    Table("by_day", metadata, Column("id", Integer, primary_key=True), Column("changed", Date))
    metadata.create_all(engine)
    engine.dispose()
    other = SqlSystem("others", postgres_url)
    copied = {name: other.copies_digests(EntityMapping(table=name, key="id", cursor="changed", fields={"k": "id"}))
              for name in metadata.tables}  # fmt: skip
    assert copied == {"text_key": False, "text_time": False, "not_unique": False, "by_day": True}
    assert other.copies_digests(EntityMapping(table="by_day", key="id", fields={"k": "id"})), "no cursor at all"


def _fields(line: str) -> tuple[str, str, str]:
    key, ts, digest = line.split("\t")
    return key, ts, digest
