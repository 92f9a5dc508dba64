"""SQLAlchemy helpers shared by the store and the SQL connector.

Only two things live here: how truesync opens an engine (SQLite needs a busy timeout and
WAL so several Airflow tasks can share one file) and the dialect-specific bulk upsert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, create_engine, event
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine


def open_engine(url: URL | str) -> Engine:
    """An engine with settings that make concurrent task access safe on every dialect."""
    engine = create_engine(url, pool_pre_ping=True, connect_args=_connect_args(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _connect_args(url: URL | str) -> dict[str, Any]:
    name = url.get_backend_name() if isinstance(url, URL) else str(url).split(":", 1)[0]
    if name.startswith("sqlite"):
        return {"timeout": 60}
    if name.startswith("postgresql"):
        return {"connect_timeout": 10}
    if name.startswith("mysql"):
        return {"connect_timeout": 10}
    return {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict_columns: Iterable[str],
    update_columns: Iterable[str],
    batch_size: int = 1000,
) -> int:
    """Create-or-update ``rows`` in batches with the dialect's native upsert.

    PostgreSQL and SQLite use ``INSERT … ON CONFLICT DO UPDATE`` on ``conflict_columns``
    (which need a unique index); MariaDB/MySQL use ``ON DUPLICATE KEY UPDATE``.
    """
    if not rows:
        return 0
    conflict, updates = list(conflict_columns), list(update_columns)
    for start in range(0, len(rows), batch_size):
        conn.execute(_upsert_statement(conn, table, conflict, updates), list(rows[start : start + batch_size]))
    return len(rows)


def _upsert_statement(conn: Connection, table: Table, conflict: list[str], updates: list[str]) -> Any:
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(table)
        if not updates:
            return stmt.on_conflict_do_nothing(index_elements=conflict)
        return stmt.on_conflict_do_update(index_elements=conflict, set_={c: stmt.excluded[c] for c in updates})
    if dialect in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        first = conflict[0]
        values = {c: stmt.inserted[c] for c in updates} or {first: table.c[first]}
        return stmt.on_duplicate_key_update(values)
    raise NotImplementedError(f"no upsert for SQL dialect '{dialect}'")
