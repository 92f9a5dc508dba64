"""SQLAlchemy helpers shared by the store and the SQL connector.

How truesync opens an engine: SQLite needs a busy timeout and WAL so several Airflow
tasks can share one file, and foreign keys turned on to enforce the ones a table declares.
The bulk writes live in ``bulk``.

A date or time Python cannot hold must not fail a whole query: PostgreSQL keeps years up to
294276 and before Christ (a birth year typed ``19850``), and SQLite keeps whatever text was
written into a ``DATE`` column. Such a value is read as the database's own text instead
(``_readable_times`` on PostgreSQL, ``time_types_read_leniently`` for a reflected SQLite
table), so the mapping refuses that one record and names it, and every other record loads.
PyMySQL gives an unreadable MariaDB date (``0000-00-00``) as its text already.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from psycopg2.extensions import PYDATE, PYDATETIME, PYDATETIMETZ, new_type, register_type
from sqlalchemy import Date, DateTime, Time, create_engine, event
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


def _or_text(read: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """``read``, giving back the value it was handed where it cannot read it."""
    if read is None:
        return None

    def lenient(value: Any, *args: Any) -> Any:
        try:
            return read(value, *args)
        except ValueError:
            return value

    return lenient


def _readable_times(dbapi_connection: Any, _record: Any = None) -> None:
    """psycopg2's dates and times, but one Python cannot hold comes as PostgreSQL's text (``19850-01-01``,
    ``0044-03-15 BC``) where psycopg2 would fail the query. ``infinity`` stays ``datetime.max``, as
    psycopg2 reads it."""
    for caster in (PYDATE, PYDATETIME, PYDATETIMETZ):
        register_type(new_type(caster.values, caster.name, _or_text(caster)), dbapi_connection)


class _TextWhenUnreadable:
    """A date or time type whose stored text Python cannot read gives back that text."""

    def result_processor(self, dialect: Any, coltype: Any) -> Callable[[Any], Any] | None:
        return _or_text(super().result_processor(dialect, coltype))


@functools.cache
def _lenient(native: type) -> type:
    return type(native.__name__, (_TextWhenUnreadable, native), {})


def time_types_read_leniently(inspector: Inspector, _table: Table, column: dict[str, Any]) -> None:
    """A ``column_reflect`` listener for SQLite: a date or time column reads as ``_TextWhenUnreadable``.

    Its type is a subclass of the dialect's own, so it writes, compares and reports its type as before.
    """
    if isinstance(column["type"], Date | DateTime | Time):
        native = inspector.dialect.type_descriptor(column["type"])
        column["type"] = native.adapt(_lenient(type(native)))
