"""Open the store and bring its schema to the latest migration, one process at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import ColumnElement, Select, text
from sqlalchemy.engine import URL, Connection, Engine, make_url

from truesync.support.connections import env_var, sqlalchemy_url
from truesync.support.paths import state_dir
from truesync.support.sqldb import open_engine

STORE_CONN_ID = "truesync_store"
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "truesync_alembic_version"
MIGRATION_LOCK_KEY = 0x7472756573796E63  # "truesync" in ASCII: the PostgreSQL advisory lock of migrations


def utcnow() -> datetime:
    """Naive UTC wall-clock time: used for bookkeeping stamps, never for windows."""
    return datetime.now(UTC).replace(tzinfo=None)


def default_store_url() -> URL:
    """The ``truesync_store`` Airflow connection if defined, else a SQLite file in the state dir."""
    if os.environ.get(env_var(STORE_CONN_ID)):
        return sqlalchemy_url(STORE_CONN_ID)
    return make_url(f"sqlite:///{state_dir() / 'truesync.db'}")


class Store:
    """A handle on the store database; migrates its schema once per process."""

    _migrated: set[str] = set()

    def __init__(self, url: URL | str | None = None) -> None:
        self.url = make_url(url) if url is not None else default_store_url()
        self.engine: Engine = open_engine(self.url)
        self.migrate()

    def migrate(self) -> None:
        """Run Alembic migrations to head; versions live in ``truesync_alembic_version``.

        The rule: the store is migrated only under a lock on the whole database, held until
        the migration commits, so when several processes open an empty store at once (a
        scheduled run and a backfill's ``plan`` task) exactly one migrates and the others wait,
        then find the schema at head and change nothing. PostgreSQL takes the transaction's
        advisory lock ``pg_advisory_xact_lock(MIGRATION_LOCK_KEY)`` (DDL is transactional
        there); SQLite opens the migration with ``BEGIN EXCLUSIVE``, waiting on the busy
        timeout while another process holds it (its DDL would otherwise commit statement by
        statement). A store already at head is recognised by a plain read and takes no lock.
        """
        name = self.url.render_as_string(hide_password=False)
        if name in Store._migrated:
            return
        if not self._at_head():
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            with self._migration_lock() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")  # reads the version again, under the lock
        Store._migrated.add(name)

    def _at_head(self) -> bool:
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_heads()
        return set(current) == set(ScriptDirectory(str(MIGRATIONS)).get_heads())

    @contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        """A connection in a transaction that holds the database's migration lock until it commits."""
        if self.engine.dialect.name != "sqlite":
            with self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                yield conn
            return
        with self.engine.connect() as conn:
            # The driver's implicit transactions off, so BEGIN EXCLUSIVE ... COMMIT is ours alone.
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")


def key_pages(store: Store, query: Select, key: ColumnElement, size: int) -> Iterator[list[Any]]:
    """The ``key`` values ``query`` selects, ``size`` at a time in key order (keyset pagination)."""
    for rows in row_pages(store, query, key, size):
        yield [row[0] for row in rows]


def row_pages(store: Store, query: Select, key: ColumnElement, size: int) -> Iterator[list[Any]]:
    """The rows ``query`` selects (``key`` first), ``size`` at a time in key order (keyset pagination).

    Each page is its own short read, so a long walk never holds one big transaction.
    """
    last = None
    while True:
        page = query if last is None else query.where(key > last)
        with store.engine.connect() as conn:
            rows = conn.execute(page.order_by(key).limit(size)).all()
        if not rows:
            return
        last = rows[-1][0]
        yield rows
