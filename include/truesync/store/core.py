"""Open the store and bring its schema to the latest migration."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import ColumnElement, Select
from sqlalchemy.engine import URL, Engine, make_url

from truesync.support.connections import env_var, sqlalchemy_url
from truesync.support.paths import state_dir
from truesync.support.sqldb import open_engine

STORE_CONN_ID = "truesync_store"
MIGRATIONS = Path(__file__).parent / "migrations"


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
        """Run Alembic migrations to head; versions live in ``truesync_alembic_version``."""
        name = self.url.render_as_string(hide_password=False)
        if name in Store._migrated:
            return
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        Store._migrated.add(name)


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
