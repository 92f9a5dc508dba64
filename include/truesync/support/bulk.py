"""Set-based writes and key lookups, each through its dialect's bulk path.

psycopg2's ``executemany`` (what SQLAlchemy uses for an upsert with many rows) sends one
statement per row. So:

* **PostgreSQL**: the rows are streamed with ``COPY`` into a temporary table, then one
  ``INSERT … SELECT … ON CONFLICT DO UPDATE … WHERE (…) IS DISTINCT FROM (…)`` merges them:
  two statements per call whatever its size, and a row that already holds the values is
  not rewritten. Keys are looked up with ``= ANY(array)``, one parameter however many keys,
  sent as one array literal (``'{"1","2"}'``) the server parses at once, not as ``ARRAY[…]``
  with an expression per key.
* **MariaDB/MySQL**: ``INSERT … VALUES (…), (…) … ON DUPLICATE KEY UPDATE``; the driver
  (PyMySQL) folds the parameter sets into multi-row statements of up to 1 MB.
* A handful of rows (``COPY_FROM_ROWS``) goes as one ``ON CONFLICT`` statement on PostgreSQL too.
* **SQLite**: one prepared statement executed for all rows inside the caller's transaction;
  keys are looked up in pages below SQLite's limit of bound parameters. SQLite enforces no
  declared type: it would keep a number too large for a ``NUMERIC(p, s)`` column as a float,
  changed, where PostgreSQL and MariaDB refuse it. So such a value is refused here, as a
  ``DataError``, and its row is isolated like theirs.

A key given twice in one call is refused before anything is sent (``DuplicateKeys``): which
of the two would win depends on the dialect, so the caller must settle it. A value the driver
refuses before sending it (text holding U+0000, which PostgreSQL cannot store, or a lone
surrogate, which no driver can encode) is a ``DataError`` like one the server refuses, so its
row is isolated the same way.
"""

from __future__ import annotations

import io
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from operator import methodcaller
from types import NoneType
from typing import Any

import pandas as pd
from psycopg2.extensions import encodings
from sqlalchemy import Float, Numeric, Table, Text, and_, any_, bindparam, cast, exists, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.sql.elements import Tuple

from truesync.support.frames import column_values, iso_text, records

COPY_FROM_ROWS = 50  # fewer rows go as one ON CONFLICT statement: COPY costs three statements more
KEYS_PER_IN = 5000  # bound parameters per IN list where arrays are not available (SQLite allows 32,766)
ROW_ERRORS = (DataError, IntegrityError)  # the database refuses a row's values, not the statement


class DuplicateKeys(ValueError):
    """The same key twice in one write."""


Rows = Sequence[dict[str, Any]] | pd.DataFrame  # dicts with the same keys, or a frame's columns
Column = list[Any] | pd.Series  # a column's values; a Series only for timestamps, spelled at once for COPY


def _columns(rows: Rows) -> dict[str, Column]:
    """Column name -> values (``None`` for nulls): a frame is read column by column, never row by row."""
    if isinstance(rows, pd.DataFrame):
        return {
            str(name): rows[name] if pd.api.types.is_datetime64_any_dtype(rows[name]) else column_values(rows[name])
            for name in rows.columns
        }
    return {name: [row[name] for row in rows] for name in rows[0]}


def _python(values: Column) -> list[Any]:
    return column_values(values) if isinstance(values, pd.Series) else values


def with_constants(rows: Rows, **values: Any) -> Rows:
    """``rows`` with the same ``values`` in every row (the run, the flow, the entity)."""
    if isinstance(rows, pd.DataFrame):
        return rows.assign(**values)
    return [{**values, **row} for row in rows]


def part(rows: Rows, start: int, stop: int) -> Rows:
    """Rows ``start`` to ``stop`` of a list or a frame."""
    return rows.iloc[start:stop] if isinstance(rows, pd.DataFrame) else rows[start:stop]


def column_names(rows: Rows) -> list[str]:
    """The columns every row carries (none when there is no row in a list)."""
    if isinstance(rows, pd.DataFrame):
        return [str(c) for c in rows.columns]
    return list(rows[0]) if len(rows) else []


def as_dicts(rows: Rows) -> list[dict[str, Any]]:
    """Rows as dicts keyed by column name, a frame's through ``frames.records``."""
    return records(rows) if isinstance(rows, pd.DataFrame) else list(rows)


def upsert(
    conn: Connection, table: Table, rows: Rows, conflict_columns: Iterable[str], update_columns: Iterable[str]
) -> int:
    """Create-or-update ``rows`` by ``conflict_columns`` (a unique index) in the dialect's bulk path.

    Every row carries the same columns. Returns how many rows were sent.
    """
    if not len(rows):
        return 0
    conflict, updates = list(conflict_columns), list(update_columns)
    columns = _checked(conn, table, rows, conflict)
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_FROM_ROWS:
        _copy_merge(conn, table, columns, conflict, updates)
    else:
        _executemany(conn, table, _upsert_statement(conn, table, conflict, updates), columns)
    return len(rows)


def upsert_from_select(
    conn: Connection, table: Table, query: Any, conflict_columns: Iterable[str], update_columns: Iterable[str]
) -> int:
    """Create-or-update the rows ``query`` selects (its columns named as ``table``'s) inside the
    database, one ``INSERT … SELECT … ON CONFLICT DO UPDATE``: no row travels. Returns how many.

    ``query`` needs a ``WHERE`` on SQLite, which would read ``ON CONFLICT`` after a join's ``ON`` otherwise.
    """
    statement = _upsert_statement(conn, table, list(conflict_columns), list(update_columns))
    return conn.execute(statement.from_select(selected_names(query), query)).rowcount


def insert_from_select(
    conn: Connection, table: Table, query: Any, conflict_columns: Iterable[str], update_columns: Iterable[str]
) -> int:
    """``upsert_from_select`` for rows expected new: on PostgreSQL a plain ``INSERT … SELECT`` in a
    savepoint, twice as fast (``ON CONFLICT`` probes the index before each row), merged only if a
    row exists after all (written by another process since the caller looked).
    """
    if conn.dialect.name == "postgresql":
        try:
            with conn.begin_nested():
                return conn.execute(table.insert().from_select(selected_names(query), query)).rowcount
        except IntegrityError:
            pass
    return upsert_from_select(conn, table, query, conflict_columns, update_columns)


def selected_names(query: Any) -> list[str]:
    """The names of the columns ``query`` selects, as an ``INSERT … SELECT`` lists them."""
    return [column.name for column in query.selected_columns]


def update_or_insert(
    conn: Connection, table: Table, rows: Rows, key_columns: Iterable[str], update_columns: Iterable[str]
) -> int:
    """Create-or-update ``rows`` by ``key_columns`` where no unique index covers them (``upsert``
    needs one): one ``UPDATE`` by key per row, then one ``INSERT … SELECT … WHERE NOT EXISTS``
    per row, so the database itself tells which keys it holds. Row by row: a table worth
    syncing often deserves the unique index instead. A key the table holds twice would update
    both rows: the caller holds such keys back. Returns how many rows were sent.
    """
    if not len(rows):
        return 0
    keys, updates = list(key_columns), list(update_columns)
    columns = _checked(conn, table, rows, keys)
    names = list(columns)
    by_key = and_(*(table.c[k] == bindparam(f"key_{k}", type_=table.c[k].type) for k in keys))
    params = [dict(zip(names, row, strict=True)) for row in zip(*(_python(columns[n]) for n in names), strict=True)]
    for row in params:
        row.update({f"key_{k}": row[k] for k in keys})
    try:
        if updates:
            conn.execute(
                update(table).where(by_key).values({c: bindparam(c, type_=table.c[c].type) for c in updates}), params
            )
        values = select(*(bindparam(n, type_=table.c[n].type) for n in names)).where(~exists().where(by_key))
        conn.execute(table.insert().from_select(names, values), params)
    except ValueError as exc:  # the driver refused a value before sending it: NUL in text, a lone surrogate
        raise DataError("update or insert", None, exc) from exc
    return len(rows)


def upsert_mostly_new(
    conn: Connection, table: Table, rows: Rows, conflict_columns: Iterable[str], update_columns: Iterable[str]
) -> int:
    """``upsert`` for rows whose keys are nearly always new (a run's staging): on PostgreSQL one
    ``COPY`` straight into the table inside a savepoint, and the merging upsert only when a key
    was there already (or given twice, which the upsert then refuses). Elsewhere ``upsert``.
    """
    if conn.dialect.name != "postgresql" or len(rows) < COPY_FROM_ROWS:
        return upsert(conn, table, rows, conflict_columns, update_columns)
    try:
        with conn.begin_nested():
            return insert(conn, table, rows)
    except IntegrityError:
        return upsert(conn, table, rows, conflict_columns, update_columns)


def insert(conn: Connection, table: Table, rows: Rows) -> int:
    """Append ``rows`` (no conflicts expected): ``COPY`` on PostgreSQL, a multi-row insert elsewhere."""
    if not len(rows):
        return 0
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_FROM_ROWS:
        _copy(conn, table, _columns(rows))
    else:
        _executemany(conn, table, table.insert(), _columns(rows))
    return len(rows)


def select_by_keys(conn: Connection, query: Any, column: Any, keys: Sequence[Any]) -> list[Any]:
    """The rows of ``query`` whose ``column`` is one of ``keys``: one ``= ANY(array)`` on
    PostgreSQL, IN lists of at most ``KEYS_PER_IN`` keys elsewhere (one query each). A
    composite key (``column`` a ``tuple_`` of columns, ``keys`` tuples) goes as row-value IN lists.
    """
    if conn.dialect.name == "postgresql" and not isinstance(column, Tuple):
        listed = bindparam(None, _array_literal(keys), type_=Text)
        keyed = [column == any_(cast(listed, postgresql.ARRAY(column.type)))]
    else:
        keyed = in_pages(column, keys)
    return [row for clause in keyed for row in conn.execute(query.where(clause)).all()]


def _array_literal(values: Sequence[Any]) -> str:
    """PostgreSQL's text form of an array of non-null values, each quoted: ``{"1","a \\"b\\""}``.

    Each value is escaped only when the values together hold a backslash or a quote.
    """
    texts = list(map(str, values))
    together = "".join(texts)
    if "\\" in together or '"' in together:
        texts = [t.replace("\\", "\\\\").replace('"', '\\"') for t in texts]
    return '{"' + '","'.join(texts) + '"}' if texts else "{}"


def in_pages(column: Any, keys: Sequence[Any]) -> list[Any]:
    """``column IN (…)`` clauses of at most ``KEYS_PER_IN`` keys each, together covering ``keys``."""
    return [column.in_(keys[start : start + KEYS_PER_IN]) for start in range(0, len(keys), KEYS_PER_IN)]


def write_isolating(engine: Engine, rows: Rows, write: Callable[[Connection, Rows], Any]) -> dict[int, str]:
    """Write ``rows`` in one transaction; when the database refuses some, bisect to them.

    A refused batch is rolled back whole and its halves are tried again, each in its own
    transaction, so only the failing batch is split, every other row is written, and k bad
    rows among n cost about 2·k·log2(n) extra statements. Returns position -> the database's
    reason for every refused row.
    """
    refused: dict[int, str] = {}
    pending = [(0, len(rows))]
    while pending:
        lo, hi = pending.pop()
        try:
            with engine.begin() as conn:
                write(conn, part(rows, lo, hi))
        except ROW_ERRORS as exc:
            if hi - lo == 1:
                refused[lo] = refusal(exc)
            else:
                middle = (lo + hi) // 2
                pending += [(middle, hi), (lo, middle)]
    return refused


def refusal(exc: DataError | IntegrityError) -> str:
    """The database's own reason, without the row's values (PostgreSQL's DETAIL repeats them)."""
    diag = getattr(exc.orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return str(primary)
    args = getattr(exc.orig, "args", ())
    return str(args[-1] if args else exc.orig).splitlines()[0]


def _checked(conn: Connection, table: Table, rows: Rows, keys: list[str]) -> dict[str, Column]:
    """The rows' columns, once what no write may send is refused: a key twice, and on SQLite a
    number beyond its column's precision."""
    columns = _columns(rows)
    _refuse_duplicates(columns, keys)
    if conn.dialect.name == "sqlite":
        _refuse_beyond_precision(table, columns)
    return columns


def _refuse_duplicates(columns: dict[str, Column], conflict: list[str]) -> None:
    keys = list(zip(*(_python(columns[c]) for c in conflict), strict=True))
    if len(set(keys)) == len(keys):
        return
    twice = [key for key, n in Counter(keys).items() if n > 1]
    shown = ", ".join(repr(k[0] if len(k) == 1 else k) for k in twice[:5])
    raise DuplicateKeys(f"{len(twice)} key(s) given more than once in one write, e.g. {shown}")


def _refuse_beyond_precision(table: Table, columns: dict[str, Column]) -> None:
    """A number with more digits before the point than its ``NUMERIC(p, s)`` column declares is a
    ``DataError`` (no value in the message: it may be personal data)."""
    for name, values in columns.items():
        kind = table.c[name].type
        if not isinstance(kind, Numeric) or isinstance(kind, Float) or not kind.precision:
            continue
        limit = Decimal(10) ** (kind.precision - (kind.scale or 0))
        for value in _python(values):
            if value is not None and _magnitude(value) >= limit:
                reason = f"a value of column '{name}' does not fit NUMERIC({kind.precision}, {kind.scale or 0})"
                raise DataError(f"INSERT INTO {table.name}", None, ValueError(reason))


def _magnitude(value: Any) -> Decimal:
    try:
        return Decimal(str(value)).copy_abs()
    except ArithmeticError:  # not a number: the database's own conversion decides
        return Decimal(0)


def _upsert_statement(conn: Connection, table: Table, conflict: list[str], updates: list[str]) -> Any:
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        stmt = (postgresql if dialect == "postgresql" else sqlite).insert(table)
        if not updates:
            return stmt.on_conflict_do_nothing(index_elements=conflict)
        return stmt.on_conflict_do_update(index_elements=conflict, set_={c: stmt.excluded[c] for c in updates})
    if dialect in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        values = {c: stmt.inserted[c] for c in updates} or {conflict[0]: table.c[conflict[0]]}
        return stmt.on_duplicate_key_update(values)
    raise NotImplementedError(f"no upsert for SQL dialect '{dialect}'")


def _executemany(conn: Connection, table: Table, statement: Any, columns: dict[str, Column]) -> None:
    """One statement compiled once, executed by the driver for every row (tuples, types bound column-wise).

    SQLAlchemy's own executemany prepares each row's parameters one by one, which costs more
    than the database's work; here each column's bind processor runs over the column once.
    """
    dialect = conn.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    names = list(compiled.positiontup or compiled.binds)  # positional (SQLite's ?) or named (PyMySQL's %(x)s)
    bound = []
    for name in names:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        bound.append(_bound(columns[name], process))
    tuples = zip(*bound, strict=True)
    params = list(tuples) if compiled.positiontup else [dict(zip(names, t, strict=True)) for t in tuples]
    try:
        conn.exec_driver_sql(compiled.string, params)
    except ValueError as exc:  # the driver refused a value before sending it: NUL in text, a lone surrogate
        raise DataError(compiled.string, None, exc) from exc


def _bound(values: Column, process: Callable[[Any], Any] | None) -> list[Any]:
    """A column's values as the driver takes them, through the type's bind processor.

    A frame's timestamp column is spelled by numpy at once when that gives, for its first
    value, exactly what the processor gives (SQLite's ``YYYY-MM-DD HH:MM:SS.ffffff``).
    """
    python = _python(values)
    if process is None:
        return python
    if isinstance(values, pd.Series) and values.notna().any():
        wall = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) is not None else values
        spelled = [None if t is None else t.replace("T", " ", 1) for t in iso_text(wall)]
        first = next(t for t in spelled if t is not None)
        if process(python[spelled.index(first)]) == first:
            return spelled
    return [None if v is None else process(v) for v in python]


def _qualified(table: Table) -> str:
    quote = postgresql.dialect().identifier_preparer.quote
    return f"{quote(table.schema)}.{quote(table.name)}" if table.schema else quote(table.name)


def _copy_merge(
    conn: Connection, table: Table, values: dict[str, Column], conflict: list[str], updates: list[str]
) -> None:
    """COPY into a temporary table shaped like the target's columns, then one merging INSERT … SELECT."""
    quote = postgresql.dialect().identifier_preparer.quote
    columns = list(values)
    staged = f"_ts_bulk_{uuid.uuid4().hex[:12]}"
    listed = ", ".join(quote(c) for c in columns)
    conn.exec_driver_sql(f"CREATE TEMP TABLE {staged} AS SELECT {listed} FROM {_qualified(table)} WITH NO DATA")
    _copy(conn, staged, values)
    action = "DO NOTHING"
    if updates:
        assigned = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in updates)
        current = ", ".join(f"{_qualified(table)}.{quote(c)}" for c in updates)
        incoming = ", ".join(f"EXCLUDED.{quote(c)}" for c in updates)
        action = f"DO UPDATE SET {assigned} WHERE ({current}) IS DISTINCT FROM ({incoming})"
    target = ", ".join(quote(c) for c in conflict)
    merge = f"INSERT INTO {_qualified(table)} ({listed}) SELECT {listed} FROM {staged} ON CONFLICT ({target}) {action}"
    conn.exec_driver_sql(merge)
    conn.exec_driver_sql(f"DROP TABLE {staged}")


def _copy(conn: Connection, table: Table | str, values: dict[str, Column]) -> None:
    """Stream rows into ``table`` with ``COPY … FROM STDIN`` in PostgreSQL's text format.

    The text is encoded here, in the connection's encoding, not by the driver while it streams:
    text the encoding cannot hold then fails as a ``DataError`` before anything is sent, where
    the driver would cancel the COPY as if the server had gone.
    """
    columns = list(values)
    texts = [_copy_column(values[c]) for c in columns]
    statement = copy_from_stdin(table, columns)
    with driver_errors(conn, statement) as cursor:
        text = "\n".join(map("\t".join, zip(*texts, strict=True))) + "\n"
        cursor.copy_expert(statement, io.BytesIO(text.encode(encodings[cursor.connection.encoding])))


def copy_from_stdin(table: Table | str, columns: list[str]) -> str:
    """``COPY <table> (<columns>) FROM STDIN``, names quoted; a ``str`` table is spelled already (a temporary one)."""
    quote = postgresql.dialect().identifier_preparer.quote
    spelled = table if isinstance(table, str) else _qualified(table)
    return f"COPY {spelled} ({', '.join(quote(c) for c in columns)}) FROM STDIN"


@contextmanager
def driver_errors(conn: Connection, statement: str) -> Iterator[Any]:
    """A raw cursor of the connection's transaction whose errors arrive as SQLAlchemy's, like any statement's.

    Text the driver cannot encode (a lone surrogate is not UTF-8) is a ``DataError`` too.
    """
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        yield cursor
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, conn.dialect.loaded_dbapi.Error) from exc
    except UnicodeEncodeError as exc:
        raise DataError(statement, None, exc) from exc
    finally:
        cursor.close()


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_SPECIAL = ("\\", "\t", "\n", "\r")
_GLUE = "\x00"  # joins a column's values to escape them in one call: PostgreSQL text never holds NUL


def _copy_column(values: Column) -> list[str]:
    """A column's values in COPY's text format: ``\\N`` for null, backslash escapes for the separators.

    Values are converted by the column's one type (timestamps of a frame by numpy at once),
    and escaped by one ``translate`` over the whole column joined (a column without a
    separator skips even that).
    """
    if isinstance(values, pd.Series):
        return _copy_times(values)
    kinds = set(map(type, values))
    nulls = NoneType in kinds
    texts = _as_text(values, kinds - {NoneType}, nulls)
    joined = _GLUE.join(texts)
    if any(c in joined for c in _SPECIAL):
        escaped = joined.translate(_ESCAPES).split(_GLUE)
        texts = escaped if len(escaped) == len(texts) else [t.translate(_ESCAPES) for t in texts]
    if not nulls:
        return texts
    return ["\\N" if v is None else t for v, t in zip(values, texts, strict=True)]


def _copy_times(times: pd.Series) -> list[str]:
    """A frame's timestamp column as ISO 8601 text, ``\\N`` for NaT; aware ones in UTC with their offset."""
    aware = getattr(times.dt, "tz", None) is not None
    spelled = iso_text(times.dt.tz_convert("UTC").dt.tz_localize(None) if aware else times)
    return ["\\N" if t is None else t + "+00:00" if aware else t for t in spelled]


def _as_text(values: list[Any], kinds: set[type], nulls: bool) -> list[str]:
    """Each value as text ('' for null), ``kinds`` the types of the non-null ones: one conversion
    for a column of one type, else value by value."""
    if kinds <= {str}:
        return ["" if v is None else v for v in values] if nulls else values
    if kinds in ({date}, {datetime}):
        return _spelled_once(values) or _each(values, methodcaller("isoformat"), nulls)
    numbers = kinds <= {int, Decimal}  # str() is their text; bool, a subclass of int, is not among them
    return _each(values, str if numbers else _copy_text, nulls)


def _each(values: list[Any], convert: Callable[[Any], str], nulls: bool) -> list[str]:
    """``convert`` of each value, '' for null; ``nulls`` says whether any value is null."""
    return ["" if v is None else convert(v) for v in values] if nulls else list(map(convert, values))


def _spelled_once(values: list[Any]) -> list[str] | None:
    """Dates or naive times in ISO 8601 ('' for null), each distinct value spelled once: a batch's
    write time is one value on every row, and dates repeat. None when a time is aware, since equal
    instants at other offsets would share one spelling.
    """
    first = next(v for v in values if v is not None)
    if getattr(first, "tzinfo", None) is not None:
        return None
    distinct = dict.fromkeys(values)
    distinct.pop(None, None)
    if any(getattr(v, "tzinfo", None) is not None for v in distinct):  # naive and aware mixed
        return None
    spelled = {v: v.isoformat() for v in distinct}
    spelled[None] = ""
    return list(map(spelled.__getitem__, values))


def _copy_text(value: Any) -> str:
    """One non-null value as text: ``t``/``f`` for booleans, ISO 8601 for times."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
