"""Shared fixtures: isolated state directories, sandbox connections and real databases.

Tests live in three tiers, marked by their folder: ``unit`` (nothing outside the process:
no network, no Airflow, no servers), ``integration`` (databases, the sandbox and its REST
APIs on localhost) and ``airflow`` (real Airflow processes). ``make test-unit`` runs the
first; ``make test`` runs all three.

PostgreSQL and MariaDB tests run when ``TRUESYNC_TEST_POSTGRES_URL`` /
``TRUESYNC_TEST_MYSQL_URL`` are set; each test session gets its own fresh database there.
With ``CI=true`` an unreachable server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

# Airflow reads its home when first imported: give the test session its own.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="truesync-airflow-home-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from sandbox_demo import Demo  # noqa: E402 - after AIRFLOW_HOME is set

from truesync import cli
from truesync.config import load_config  # noqa: E402
from truesync.sandbox import systems as sandbox  # noqa: E402
from truesync.store import Store  # noqa: E402

SANDBOX_SYSTEMS = ("webshop", "erp", "crm", "stockctl")


TIERS = ("unit", "integration", "airflow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder it lives in (``-m unit`` and so on select them)."""
    root = Path(__file__).parent
    for item in items:
        tier = item.path.relative_to(root).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit, tests/integration or tests/airflow")
        item.add_marker(tier)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state directory with the sandbox systems as SQLite files in it."""
    monkeypatch.setenv("TRUESYNC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("AIRFLOW_CONN_TRUESYNC_STORE", raising=False)
    for system in SANDBOX_SYSTEMS:
        url = sqlite_url(tmp_path / "state" / "sandbox" / f"{system}.db")
        monkeypatch.setenv(f"AIRFLOW_CONN_TRUESYNC_{system.upper()}", url)
    return tmp_path / "state"


class ServerDatabases:
    """Creates fresh databases on one server for a test and drops them all afterwards."""

    def __init__(self, env: str, create: str, drop: str) -> None:
        raw = os.environ.get(env)
        if not raw:
            pytest.skip(f"{env} not set")
        self.base, self.create, self.drop = make_url(raw), create, drop
        self.admin = create_engine(self.base, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []
        try:
            with self.admin.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            self.admin.dispose()
            if os.environ.get("CI") == "true":
                pytest.fail(f"{env} is set but the server is unreachable: {exc.orig}")
            pytest.skip(f"{env} unreachable: {exc.orig}")

    def new(self) -> URL:
        name = f"ts_test_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(text(self.create.format(name=name)))
        self.names.append(name)
        return self.base.set(database=name)

    def close(self) -> None:
        with self.admin.connect() as conn:
            for name in self.names:
                conn.execute(text(self.drop.format(name=name)))
        self.admin.dispose()


@pytest.fixture
def postgres_databases() -> Iterator[ServerDatabases]:
    """Fresh PostgreSQL databases on demand for one test, dropped afterwards."""
    servers = ServerDatabases(
        "TRUESYNC_TEST_POSTGRES_URL", 'CREATE DATABASE "{name}"', 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    )
    yield servers
    servers.close()


@pytest.fixture
def postgres_url(postgres_databases: ServerDatabases) -> URL:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    return postgres_databases.new()


@pytest.fixture
def mysql_url() -> Iterator[URL]:
    """A fresh MariaDB/MySQL database for one test, dropped afterwards."""
    servers = ServerDatabases(
        "TRUESYNC_TEST_MYSQL_URL", "CREATE DATABASE `{name}` CHARACTER SET utf8mb4", "DROP DATABASE IF EXISTS `{name}`"
    )
    yield servers.new()
    servers.close()


@pytest.fixture
def demo(state: Path) -> Iterator[Demo]:
    """The sandbox at scale 200 in a private state directory, with handles on its systems."""
    assert cli.main(["sandbox", "init", "--scale", "200"]) == 0
    config = load_config()
    handle = Demo(config, Store(), state, sandbox.system_urls(config))
    yield handle
    handle.close()
