"""SQLAlchemy helpers shared by the store and the SQL connector.

How truesync opens an engine: SQLite needs a busy timeout and WAL so several Airflow
tasks can share one file, and foreign keys turned on to enforce the ones a table declares.
The bulk writes live in ``bulk``.

A value Python cannot read must not fail a whole query, nor be read as another value.
PostgreSQL keeps years up to 294276 and before Christ (a birth year typed ``19850``); SQLite
keeps any value in any column: ``1985-02-31`` in a ``DATE``, ``abc`` in a ``NUMERIC``, and
``'false'`` in a ``BOOLEAN``, which SQLAlchemy would read as true (every value but 0 is).
So on PostgreSQL such a date or time is read as the server's text (``_readable_times``), and
a reflected SQLite table reads what its types cannot as stored, and a boolean always as
stored (``read_as_stored``). The mapping then reads each value as its field's type, refuses
the one it cannot and names it, and every other record loads. PyMySQL gives an unreadable
MariaDB date (``0000-00-00``) as its text already.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from psycopg2.extensions import PYDATE, PYDATETIME, PYDATETIMETZ, new_type, register_type
from sqlalchemy import Boolean, create_engine, event
from sqlalchemy.engine import URL, Engine, Inspector
from sqlalchemy.schema import Table

# How long a SQLite connection waits for another's write lock: truesync's engines, and Airflow's own
# SQLite metadata database where ``sandbox.localairflow`` runs Airflow (``sql_alchemy_connect_args``).
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 60}


def open_engine(url: URL | str) -> Engine:
    """An engine with settings that make concurrent task access safe on every dialect."""
    engine = create_engine(url, pool_pre_ping=True, connect_args=_connect_args(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if engine.dialect.driver == "psycopg2":
        event.listen(engine, "connect", _readable_times)
    return engine


def _connect_args(url: URL | str) -> dict[str, Any]:
    name = url.get_backend_name() if isinstance(url, URL) else str(url).split(":", 1)[0]
    if name.startswith("sqlite"):
        return dict(SQLITE_CONNECT_ARGS)  # a copy: Airflow adds its own keys to the dict it imports
    if name.startswith("postgresql"):
        return {"connect_timeout": 10}
    if name.startswith("mysql"):
        return {"connect_timeout": 10}
    return {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")  # a declared foreign key holds, as on every other database
    cursor.close()


def _or_as_given(read: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """``read``, giving back the value it was handed where it cannot read it."""
    if read is None:
        return None

    def lenient(value: Any, *args: Any) -> Any:
        try:
            return read(value, *args)
        except (ValueError, TypeError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
            return value

    return lenient


def _readable_times(dbapi_connection: Any, _record: Any) -> None:
    """psycopg2's dates and times, but one Python cannot hold comes as PostgreSQL's text (``19850-01-01``,
    ``0044-03-15 BC``) where psycopg2 would fail the query. ``infinity`` stays ``datetime.max``, as
    psycopg2 reads it."""
    for caster in (PYDATE, PYDATETIME, PYDATETIMETZ):
        register_type(new_type(caster.values, caster.name, _or_as_given(caster)), dbapi_connection)


class _AsStoredWhenUnreadable:
    """A type that gives back the stored value its own reading fails on."""

    def result_processor(self, dialect: Any, coltype: Any) -> Callable[[Any], Any] | None:
        return _or_as_given(super().result_processor(dialect, coltype))


class _AsStored:
    """A type read as stored, for the mapping to read (SQLite's ``BOOLEAN``: 1, 0, or text)."""

    def result_processor(self, dialect: Any, coltype: Any) -> None:
        return None


@functools.cache
def _reading(how: type, native: type) -> type:
    return type(native.__name__, (how, native), {})


def read_as_stored(inspector: Inspector, _table: Table, column: dict[str, Any]) -> None:
    """A ``column_reflect`` listener for SQLite: a boolean column reads ``_AsStored``, any other whose type
    converts what it reads (dates, times, numbers) ``_AsStoredWhenUnreadable``.

    Its type is a subclass of the dialect's own, so it writes, compares and reports its type as before.
    """
    dialect = inspector.dialect
    native = dialect.type_descriptor(column["type"])
    if isinstance(native, Boolean):
        column["type"] = native.adapt(_reading(_AsStored, type(native)))
    elif native.result_processor(dialect, None) is not None:
        column["type"] = native.adapt(_reading(_AsStoredWhenUnreadable, type(native)))
