"""SQL systems over SQLAlchemy Core: any URL SQLAlchemy and an installed driver can open.

Extraction is keyset-paginated on ``(cursor, key)`` so memory stays bounded by the chunk
size and a long extract never holds one huge transaction. Rows that share both cursor and
key (a duplicate key) are fetched together with the page they straddle, so nothing is
skipped or read twice. Rows with a null key cannot be paged by key and are streamed
separately, all of them on every run, with rows whose change time is null. Writes go through the
dialect's bulk path (``support.bulk``), one transaction per batch; a refused row is isolated by
bisecting its batch, so the others are written.

A mapped table is reflected once, when first reached, and its mapped columns checked:
a missing table or column is a configuration problem, an unreachable database is transient.
Each column takes the Python type its SQLAlchemy type names (None when it names none).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Iterator
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    Date,
    DateTime,
    Integer,
    MetaData,
    Table,
    and_,
    cast,
    delete,
    false,
    func,
    inspect,
    literal,
    null,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import NoSuchTableError, OperationalError, SQLAlchemyError

from truesync.config import EntityMapping
from truesync.connectors.base import SoftMark
from truesync.connectors.errors import ConfigurationProblem, RecordsRejected, SystemUnavailable
from truesync.connectors.sql.digest import DIALECTS, plain_type, row_digest
from truesync.core.keys import split, system_keys
from truesync.support.bulk import (
    Rows,
    as_dicts,
    column_names,
    in_pages,
    part,
    select_by_keys,
    update_or_insert,
    upsert,
    write_isolating,
)
from truesync.support.connections import safe, sqlalchemy_url
from truesync.support.copy_stream import copy_out
from truesync.support.frames import from_rows
from truesync.support.sqldb import open_engine, read_as_stored


class SqlSystem:
    """One SQL system: reflected tables, windowed extraction, lookups by key, upserts."""

    def __init__(self, name: str, url: URL | str) -> None:
        self.name = name
        self.url = make_url(url)
        self.engine = open_engine(url)
        self._tables: dict[tuple[str | None, str], Table] = {}
        self._unique: dict[tuple[str | None, str], bool] = {}
        self._folds: dict[tuple[str | None, str, tuple[str, ...]], bool] = {}

    @classmethod
    def open(cls, name: str, settings: None, connection: str) -> SqlSystem:
        """The system behind an Airflow connection holding its URL; the kind takes no settings."""
        return cls(name, sqlalchemy_url(connection))

    def describe(self) -> str:
        return f"system '{self.name}' ({safe(self.url)})"

    def columns(self, mapping: EntityMapping) -> dict[str, type | None]:
        """Every column of the mapped table and the Python type it takes."""
        return {column.name: _python_type(column.type) for column in self._table(mapping).columns}

    def _table(self, mapping: EntityMapping) -> Table:
        """The mapped table, reflected once; config names are checked against real columns."""
        ident = (mapping.db_schema, mapping.table)
        if ident not in self._tables:
            try:
                lenient = [("column_reflect", read_as_stored)] if self.engine.dialect.name == "sqlite" else []
                table = Table(
                    mapping.table, MetaData(), schema=mapping.db_schema, autoload_with=self.engine, listeners=lenient
                )
            except NoSuchTableError as exc:
                raise ConfigurationProblem(f"{self.describe()}: table '{mapping.table}' does not exist") from exc
            except OperationalError as exc:
                raise SystemUnavailable(f"{self.describe()} is unreachable: {exc.orig}") from exc
            wanted = set(mapping.columns)
            unknown = sorted(wanted - set(table.c.keys()))
            if unknown:
                raise ConfigurationProblem(
                    f"{self.describe()}: table '{mapping.table}' has no column(s) {', '.join(unknown)}"
                )
            self._tables[ident] = table
        return self._tables[ident]

    def _columns(self, mapping: EntityMapping) -> list[Any]:
        table = self._table(mapping)
        return [table.c[n] for n in mapping.columns]

    def _frame(self, query: Any, mapping: EntityMapping, extra: list[str] | None = None) -> pd.DataFrame:
        return self._frames(lambda conn: conn.execute(query).all(), mapping, extra)

    def _frames(
        self, read: Callable[[Connection], list[Any]], mapping: EntityMapping, extra: list[str] | None = None
    ) -> pd.DataFrame:
        """The rows ``read(conn)`` returns, as one frame of objects."""
        columns = [c.name for c in self._columns(mapping)] + (extra or [])
        try:
            with self.engine.connect() as conn:
                rows = read(conn)
        except OperationalError as exc:
            raise SystemUnavailable(f"{self.describe()} is unreachable: {exc.orig}") from exc
        return from_rows(rows, columns)

    def extract(self, mapping: EntityMapping, start: datetime, end: datetime, size: int) -> Iterator[pd.DataFrame]:
        """Rows whose cursor is in ``[start, end)``, in (cursor, key columns) order, chunk by chunk."""
        table = self._table(mapping)
        order = [mapping.cursor, *mapping.key_columns]
        sorted_by = [table.c[c] for c in order]
        in_window = and_(sorted_by[0] >= start, sorted_by[0] < end, *(k.is_not(None) for k in sorted_by[1:]))
        base = select(*self._columns(mapping)).where(in_window).order_by(*sorted_by)
        after: tuple[Any, ...] | None = None
        while True:
            page = self._frame((base if after is None else base.where(_after(sorted_by, after))).limit(size), mapping)
            if page.empty:
                break
            last = tuple(page[c].iloc[-1] for c in order)
            if after is not None and not _advances(last, after):
                raise ConfigurationProblem(
                    f"{self.describe()}: paging '{mapping.table}' by ({', '.join(order)}) does not "
                    "advance; store the cursor column in one sortable format"
                )
            after = last
            same = [c == v for c, v in zip(sorted_by, after, strict=True)]
            ties = self._frame(select(*self._columns(mapping)).where(*same), mapping)
            is_last = pd.concat([page[c] == v for c, v in zip(order, after, strict=True)], axis=1).all(axis=1)
            yield pd.concat([page[~is_last], ties if not ties.empty else page[is_last]], ignore_index=True)

    def unwindowed_rows(self, mapping: EntityMapping, size: int) -> Iterator[pd.DataFrame]:
        """Every row with a null key or a null change time, streamed in chunks.

        No window or key lookup can find them, so each run reads them all: they go to the
        exception queue instead of being silently skipped, and a row that got a key meanwhile
        is then known to be fixed. Two queries, not one with ``OR``, so each can use the index
        on its column and the cost stays with the few bad rows, not the table.
        """
        table = self._table(mapping)
        keys, cursor = [table.c[c] for c in mapping.key_columns], table.c[mapping.cursor]
        columns = [c.name for c in self._columns(mapping)]
        keyed = and_(*(k.is_not(None) for k in keys))
        for condition in (or_(*(k.is_(None) for k in keys)), and_(cursor.is_(None), keyed)):
            try:
                with self.engine.connect() as conn:
                    query = select(*self._columns(mapping)).where(condition)
                    result = conn.execution_options(stream_results=True, yield_per=size).execute(query)
                    for part in result.partitions(size):
                        yield from_rows(part, columns)
            except OperationalError as exc:
                raise SystemUnavailable(f"{self.describe()} is unreachable: {exc.orig}") from exc

    def scan(self, mapping: EntityMapping, size: int, hidden: SoftMark = None) -> Iterator[pd.DataFrame]:
        """Every row with a key, in no particular order, streamed in frames of ``size`` (a full compare).

        ``hidden`` is a soft-delete mark ``(column, value)``: rows whose column holds the value
        (any value, when it is None) are deleted records and left out.
        """
        return self._scan(mapping, self._columns(mapping), size, hidden)

    def gives_digests(self) -> bool:
        """PostgreSQL, MariaDB and MySQL hash with MD5 (``connectors.sql.digest``); SQLite has no hash function."""
        return self.engine.dialect.name in DIALECTS

    def plain_columns(self, mapping: EntityMapping, columns: list[str]) -> set[str]:
        """Those of ``columns`` of a number, date or time type (``connectors.sql.digest.plain_type``)."""
        table = self._table(mapping)
        return {c for c in columns if plain_type(table.c[c].type)}

    def scan_digests(
        self,
        mapping: EntityMapping,
        columns: list[str],
        size: int,
        hidden: SoftMark = None,
        plain: Collection[str] = (),
    ) -> Iterator[pd.DataFrame]:
        """As ``scan``, each row only its key columns, its cursor and the digest of ``columns`` (``DIGEST_COLUMN``),
        those in ``plain`` spelled without their length."""
        table = self._table(mapping)
        read = [table.c[c] for c in mapping.narrowed([]).columns]  # the key columns and the cursor
        return self._scan(mapping, [*read, row_digest([table.c[c] for c in columns], plain)], size, hidden)

    def copies_digests(self, mapping: EntityMapping) -> bool:
        """PostgreSQL, one whole-number key column with a unique key (its text is the canonical key, always
        storable, each once), and a change time of a date or time type, or none (``CopiesDigests``)."""
        if self.engine.dialect.name != "postgresql" or len(mapping.key_columns) != 1:
            return False
        table = self._table(mapping)
        cursor = table.c[mapping.cursor].type if mapping.cursor else None
        whole = isinstance(table.c[mapping.key_columns[0]].type, Integer)
        return whole and (cursor is None or isinstance(cursor, DateTime | Date)) and self._has_unique_key(mapping)

    def copy_digests(
        self, mapping: EntityMapping, columns: list[str], hidden: SoftMark, prefix: str, plain: Collection[str] = ()
    ) -> Generator[bytes, None, None]:
        """Key, change time as naive UTC and ``prefix`` + digest of ``columns`` (``plain`` as in ``scan_digests``)
        of every row, as ``COPY`` text (``support.copy_stream``); only where ``copies_digests``."""
        table = self._table(mapping)
        digest = func.concat(literal(prefix), row_digest([table.c[c] for c in columns], plain))
        query = self._scan_query(mapping, [table.c[mapping.key_columns[0]], self._utc(mapping), digest], hidden)
        # COPY takes the query as text: values inline, and '%' as itself, where psycopg2's own
        # style doubles it for an interpolation COPY does not do
        compiled = query.compile(dialect=postgresql.dialect(paramstyle="named"), compile_kwargs={"literal_binds": True})
        try:
            yield from copy_out(self.engine, str(compiled))
        except OperationalError as exc:
            raise SystemUnavailable(f"{self.describe()} is unreachable: {exc.orig}") from exc

    def _utc(self, mapping: EntityMapping) -> Any:
        """The change time as naive UTC, as ``core.canonical`` reads it (a naive time is UTC already)."""
        if not mapping.cursor:
            return cast(null(), DateTime)
        column = self._table(mapping).c[mapping.cursor]
        if isinstance(column.type, DateTime) and column.type.timezone:
            return func.timezone("UTC", column)
        return cast(column, DateTime)

    def _scan_query(self, mapping: EntityMapping, selected: list[Any], hidden: SoftMark) -> Any:
        """``selected`` of every row with a whole key, but the rows ``hidden`` marks soft-deleted."""
        table = self._table(mapping)
        query = select(*selected).where(*(table.c[c].is_not(None) for c in mapping.key_columns))
        if hidden is not None:
            query = query.where(self._live(table, mapping, *hidden))
        return query

    def _scan(self, mapping: EntityMapping, selected: list[Any], size: int, hidden: SoftMark) -> Iterator[pd.DataFrame]:
        query = self._scan_query(mapping, selected, hidden)
        columns = [c.name for c in selected]
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=size).execute(query)
                for part in result.partitions(size):
                    yield from_rows(part, columns)
        except OperationalError as exc:
            raise SystemUnavailable(f"{self.describe()} is unreachable: {exc.orig}") from exc

    def scans_each_key_once(self, mapping: EntityMapping) -> bool:
        """``scan`` is one query, so it returns each key once where a unique key covers the key columns."""
        return self._has_unique_key(mapping)

    def _live(self, table: Table, mapping: EntityMapping, column: str, value: str | None) -> Any:
        """Rows not marked deleted by ``column`` (null, or another value than ``value``)."""
        if column not in table.c:
            raise ConfigurationProblem(
                f"{self.describe()}: table '{mapping.table}' has no column {column} for soft deletes"
            )
        mark = table.c[column]
        return mark.is_(None) if value is None else or_(mark.is_(None), mark != value)

    def require_unique_key(self, mapping: EntityMapping) -> None:
        """A compare tells records apart by key: the key column must be a primary key or unique."""
        if not self._has_unique_key(mapping):
            named = "column " if len(mapping.key_columns) == 1 else "columns "
            raise ConfigurationProblem(
                f"{self.describe()}: table '{mapping.table}' has no unique key on its key {named}"
                f"{', '.join(mapping.key_columns)}; "
                "a compare needs one to tell records apart (add a unique constraint or index)"
            )

    def folds_case(self, mapping: EntityMapping) -> bool:
        """Whether the key column (one of them, for a composite key) compares text without case, so that
        ``x`` and ``X`` are one key: MariaDB's and MySQL's default collations, SQLite's ``NOCASE``,
        PostgreSQL's ``citext``. Asked once per table and key, of the database itself, through the column's
        own comparison over no row (``'x'`` in a union under the column, compared with ``'X'``)."""
        ident = (mapping.db_schema, mapping.table, tuple(mapping.key_columns))
        if ident not in self._folds:
            columns = [self._table(mapping).c[name] for name in mapping.key_columns]
            try:
                with self.engine.connect() as conn:
                    self._folds[ident] = any(conn.execute(_folds_case(column)).scalar() for column in columns)
            except OperationalError as exc:
                raise SystemUnavailable(f"{self.describe()} is unreachable: {exc.orig}") from exc
        return self._folds[ident]

    def _has_unique_key(self, mapping: EntityMapping) -> bool:
        """Whether a primary key, unique constraint or unique index covers exactly the key columns (asked once)."""
        ident = (mapping.db_schema, mapping.table)
        if ident not in self._unique:
            table = self._table(mapping)
            inspector = inspect(self.engine)
            unique = [list(table.primary_key.columns.keys())]
            unique += [c["column_names"] for c in inspector.get_unique_constraints(table.name, schema=table.schema)]
            unique += [i["column_names"] for i in inspector.get_indexes(table.name, schema=table.schema) if i["unique"]]
            self._unique[ident] = sorted(mapping.key_columns) in [sorted(columns) for columns in unique]
        return self._unique[ident]

    def delete(self, mapping: EntityMapping, keys: list[str]) -> int:
        """Remove the rows of ``keys``, in one transaction; returns how many were removed."""
        table = self._table(mapping)
        return self._change(mapping, keys, lambda where: delete(table).where(where))

    def mark_deleted(self, mapping: EntityMapping, keys: list[str], column: str, value: Any) -> int:
        """Soft delete: set ``column`` to ``value`` on the rows of ``keys``; returns how many were marked."""
        table = self._table(mapping)
        self._live(table, mapping, column, None)  # names a missing column
        return self._change(mapping, keys, lambda where: update(table).where(where).values({column: value}))

    def _change(self, mapping: EntityMapping, keys: list[str], statement: Callable[[Any], Any]) -> int:
        key, typed = self._keyed(mapping, keys)
        try:
            with self.engine.begin() as conn:
                return sum(conn.execute(statement(page)).rowcount for page in in_pages(key, typed))
        except OperationalError as exc:
            raise SystemUnavailable(f"{self.describe()} is unreachable: {exc.orig}") from exc

    def fetch(self, mapping: EntityMapping, keys: list[str], hidden: SoftMark = None) -> pd.DataFrame:
        """Current rows for ``keys`` (at most a chunk of them): target matching and retries.

        Rows ``hidden`` marks soft-deleted are left out, as ``scan`` leaves them out.
        """
        table = self._table(mapping)
        key, typed = self._keyed(mapping, keys)
        base = select(*self._columns(mapping))
        if hidden is not None:
            base = base.where(self._live(table, mapping, *hidden))
        return self._frames(lambda conn: select_by_keys(conn, base, key, typed), mapping)

    def _keyed(self, mapping: EntityMapping, keys: list[str]) -> tuple[Any, list[Any]]:
        """The key column (a tuple of them for a composite key) and ``keys`` as its values, typed.

        A record key of a composite whose parts do not split as its columns (a stand-in for a
        key the store could not hold) names no row and is left out.
        """
        columns = [self._table(mapping).c[c] for c in mapping.key_columns]
        if len(columns) == 1:
            return columns[0], [_key_value(k, columns[0].type) for k in keys]
        typed = []
        for key in keys:
            try:
                parts = split(key, len(columns))
            except ValueError:
                continue
            typed.append(tuple(_key_value(p, c.type) for p, c in zip(parts, columns, strict=True)))
        return tuple_(*columns), typed

    def fetch_by(self, mapping: EntityMapping, column: str, values: list[str]) -> pd.DataFrame:
        """Current rows whose ``column`` holds one of ``values``: records found by another reference."""
        table = self._table(mapping)
        if column not in table.c:
            raise ConfigurationProblem(f"{self.describe()}: table '{mapping.table}' has no column {column}")
        typed = [_key_value(v, table.c[column].type) for v in values]
        columns = self._columns(mapping)
        extra = [] if column in {c.name for c in columns} else [column]
        base = select(*columns, *(table.c[c] for c in extra))
        by = table.c[column]
        return self._frames(lambda conn: select_by_keys(conn, base, by, typed), mapping, extra)

    def write(self, mapping: EntityMapping, rows: Rows, batch_size: int, run_id: str = "") -> int:
        """Create-or-update rows by the mapping's key column, ``batch_size`` rows a transaction, set-based
        (row by row where no unique key covers the key columns: ``bulk.update_or_insert``).

        A row the database refuses (too long, out of range, a constraint) is found by bisecting
        its batch; every other row is written, and :class:`RecordsRejected` then names the
        refused ones with the database's reason. ``run_id`` is unused: an upsert in one
        transaction needs no idempotency key.
        """
        table = self._table(mapping)
        updates = [c for c in column_names(rows) if c not in mapping.key_columns]
        merge = upsert if not len(rows) or self._has_unique_key(mapping) else update_or_insert

        def write(conn: Connection, batch: Rows) -> int:
            return merge(conn, table, batch, mapping.key_columns, updates)

        refused: dict[str, str] = {}
        for start in range(0, len(rows), batch_size):
            batch = part(rows, start, start + batch_size)
            failed = self._write_batch(mapping, batch, write)
            shown = as_dicts(batch) if failed else []
            names = system_keys([shown[position] for position in failed], mapping)
            for name, reason in zip(names, failed.values(), strict=True):
                refused[name] = f"{self.describe()} refused it: {reason}"
        if refused:
            raise RecordsRejected(refused)
        return len(rows)

    def _write_batch(
        self, mapping: EntityMapping, batch: Rows, write: Callable[[Connection, Rows], Any]
    ) -> dict[int, str]:
        try:
            return write_isolating(self.engine, batch, write)
        except OperationalError as exc:
            raise SystemUnavailable(f"{self.describe()} is unreachable: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise ConfigurationProblem(f"{self.describe()}: write to '{mapping.table}' failed: {exc.orig}") from exc


def _advances(last: tuple[Any, ...], after: tuple[Any, ...]) -> bool:
    """Whether a page's last (cursor, key…) is past the one before; a change time read as stored (SQLite's
    text, when Python cannot read it: ``support.sqldb``) is compared with the other as text."""
    if all(type(a) is type(b) for a, b in zip(last, after, strict=True)):
        return last > after
    return tuple(map(str, last)) > tuple(map(str, after))


def _after(columns: list[Any], values: tuple[Any, ...]) -> Any:
    """Rows after ``values`` in the order of ``columns``:
    ``c0 >= v0 AND (c0 > v0 OR (c0 = v0 AND (c1 > v1 OR …)))``.

    Spelt out rather than as a row comparison, which MariaDB does not serve from an index. The
    leading ``c0 >= v0`` says the same as the rest, but it is what PostgreSQL starts its index
    scan at: without it, the scan starts at the window's start and filters out every row of the
    pages before, so paging through a window cost the square of its size.
    """
    condition = columns[-1] > values[-1]
    for column, value in zip(reversed(columns[:-1]), reversed(values[:-1]), strict=True):
        condition = or_(column > value, and_(column == value, condition))
    return and_(columns[0] >= values[0], condition) if len(columns) > 1 else condition


def _python_type(column_type: Any) -> type | None:
    try:
        return column_type.python_type
    except NotImplementedError:
        return None


def _key_value(key: str, column_type: Any) -> Any:
    """Keys travel as text; an integer key column needs integers to use its index."""
    try:
        return int(key) if _python_type(column_type) is int else key
    except ValueError:
        return key


def _folds_case(column: Any) -> Any:
    """How many of ``'x'``, under ``column``'s comparison, equal ``'X'``: 1 where it ignores case, else 0."""
    under = union_all(select(column.label("k")).where(false()), select(literal("x").label("k"))).subquery()
    return select(func.count()).where(under.c.k == literal("X"))
