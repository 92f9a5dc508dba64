"""Shared fixtures: isolated state directories, sandbox connections and real databases.

Tests live in three tiers, marked by their folder: ``unit`` (nothing outside the process:
no network, no Airflow, no servers), ``integration`` (databases, the sandbox and its REST
APIs on localhost) and ``airflow`` (real Airflow processes). ``make test-unit`` runs the
first; ``make test`` runs all three.

PostgreSQL and MariaDB tests run when ``TRUESYNC_TEST_POSTGRES_URL`` /
``TRUESYNC_TEST_MYSQL_URL`` are set; each test session gets its own fresh database there.
With ``CI=true`` an unreachable server fails the run instead of skipping.

Setups that take long are built once per module (``module_demo_days``, ``module_runs``)
for the tests that only read them (``demo_days``, ``shared_runs``, which fail a test that
changed them); a test that changes the systems, the store or the files takes ``demo`` or
``runs`` and gets a sandbox of its own.
"""

from __future__ import annotations

import os
import shutil
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

from config_edits import SHIPPED  # noqa: E402
from report_runs import Runs  # noqa: E402 - after AIRFLOW_HOME is set
from sandbox_demo import Demo, DemoDays, open_demo  # noqa: E402
from shared_setup import left_as_is, module_state, point_at_state  # noqa: E402

from truesync import cli
from truesync.config import load_config  # noqa: E402
from truesync.sandbox import systems as sandbox  # noqa: E402
from truesync.store import Store  # noqa: E402

TIERS = ("unit", "integration", "airflow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder it lives in (``-m unit`` and so on select them)."""
    root = Path(__file__).parent
    for item in items:
        tier = item.path.relative_to(root).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit, tests/integration or tests/airflow")
        item.add_marker(tier)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state directory with the sandbox systems as SQLite files in it."""
    return point_at_state(monkeypatch, tmp_path)


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


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> URL:
    """The store's database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return make_url(f"sqlite:///{tmp_path / 'store.db'}")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: URL) -> Iterator[Store]:
    """A migrated store on SQLite, then on PostgreSQL."""
    handle = Store(store_url)
    yield handle
    handle.engine.dispose()


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
    handle = open_demo(state)
    yield handle
    handle.close()


@pytest.fixture(scope="module")
def module_demo_days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDays]:
    """The sandbox at scale 200 after both flows ran over the demo days, built once per module."""
    with module_state(tmp_path_factory, "demo-days") as state:
        handle = open_demo(state)
        try:
            yield DemoDays.run(handle)
        finally:
            handle.close()


@pytest.fixture
def demo_days(module_demo_days: DemoDays) -> Iterator[DemoDays]:
    """The demo days of the module, for a test that only reads them: it fails if it changes them.

    A test that runs more flows, edits a system or decides exceptions takes ``demo``.
    """
    with left_as_is(module_demo_days.demo, "the demo days"):
        yield module_demo_days


def open_runs(state: Path) -> Runs:
    """The sandbox at scale 200, synced for three runs with their HTML pages and the index rendered."""
    assert cli.main(["sandbox", "init", "--scale", "200"]) == 0
    return Runs.made(load_config(), Store(), state)


@pytest.fixture
def runs(state: Path) -> Iterator[Runs]:
    """Three runs with their HTML pages, for one test that may change them."""
    handle = open_runs(state)
    yield handle
    handle.store.engine.dispose()


@pytest.fixture(scope="module")
def module_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runs, Demo]]:
    """``runs`` built once per module, with handles on the systems to check they stay as built."""
    with module_state(tmp_path_factory, "report-runs") as state:
        handle = open_runs(state)
        demo = Demo(handle.config, handle.store, state, sandbox.system_urls(handle.config))
        try:
            yield handle, demo
        finally:
            demo.close()


@pytest.fixture
def shared_runs(module_runs: tuple[Runs, Demo]) -> Iterator[Runs]:
    """The module's runs for a test that only reads them, their pages and the index: it fails if it changes them."""
    handle, demo = module_runs
    with left_as_is(demo, "the report runs"):
        yield handle


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A private copy of the shipped configuration, free to break."""
    target = tmp_path / "config"
    shutil.copytree(SHIPPED, target)
    return target
