"""SQLAlchemy helpers shared by the store and the SQL connector.

How truesync opens an engine: SQLite needs a busy timeout and WAL so several Airflow
tasks can share one file, and foreign keys turned on to enforce the ones a table declares.
The bulk writes live in ``bulk``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine

# How long a SQLite connection waits for another's write lock: truesync's engines, and Airflow's own
# SQLite metadata database where ``sandbox.localairflow`` runs Airflow (``sql_alchemy_connect_args``).
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 60}


def open_engine(url: URL | str) -> Engine:
    """An engine with settings that make concurrent task access safe on every dialect."""
    engine = create_engine(url, pool_pre_ping=True, connect_args=_connect_args(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
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
