"""Digests (``connectors.sql.digest``): each row's MD5 over its columns' text, spelled so no two rows share one.

On PostgreSQL and MariaDB (when their servers are configured) the digest a SQL system gives
must be exactly the MD5 of the spelling ``docs/design.md`` states ("Digests"), computed here in
Python from the same values' text, so both databases give the same digest for the same values.
SQLite has no hash function, so it gives none.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Column, Date, DateTime, Integer, MetaData, Numeric, String, Table, insert
from sqlalchemy.engine import URL, make_url

from truesync.config import EntityMapping
from truesync.connectors.base import DIGEST_COLUMN, ScansDigests
from truesync.connectors.sql.system import SqlSystem
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


def spelled(values: tuple[object, ...]) -> str:
    """The digest ``docs/design.md`` states: MD5 of each column as ``<length>:<text>``, or ``~`` when null."""
    texts = [None if v is None else TEXT.get(v, str(v)) for v in values]  # type: ignore[call-overload]
    return hashlib.md5("".join("~" if t is None else f"{len(t)}:{t}" for t in texts).encode()).hexdigest()


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


def test_a_scan_of_digests_leaves_out_the_rows_a_soft_delete_marks(system: SqlSystem) -> None:
    live = pd.concat(system.scan_digests(MAPPING, ["a"], 10, ("b", "ab")))
    assert sorted(live["id"]) == [1, 3, 4, 5, 6, 7]


def test_sqlite_gives_no_digests(tmp_path: Path) -> None:
    assert not SqlSystem("things", make_url(f"sqlite:///{tmp_path / 'things.db'}")).gives_digests()
