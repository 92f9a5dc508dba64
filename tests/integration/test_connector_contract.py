"""The contract every connector keeps, the same cases run on every kind and backend.

In the style of singer-sdk's built-in tap tests: each case is written once against the
``Source`` and ``Target`` roles and runs on SQL (SQLite always, PostgreSQL and MariaDB when
their servers are configured) and on REST (the sandbox CRM served on localhost). A system is
opened the way the pipeline opens it, through the registry and an Airflow connection in the
environment. The fixture data is a few tens of records whose change times come in tie
groups larger than a page and than a chunk.

The contract: a window is half-open ``[start, end)`` and gives each record once, ties
included; ``fetch`` gives exactly the asked keys it holds; ``columns`` describes every
mapped column; a write creates then updates by key, and writing the same again changes
nothing; a record the target refuses is reported by key (``RecordsRejected``) while the
others are written; an unreachable system is ``SystemUnavailable`` and a missing table or
endpoint a ``ConfigurationProblem``, neither showing the secret.
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table
from sqlalchemy.engine import URL, make_url

from truesync.config import Config, EntityMapping, SystemConfig
from truesync.connectors.base import Source, Target
from truesync.connectors.errors import ConfigurationProblem, RecordsRejected, SystemUnavailable
from truesync.connectors.registry import open_source, open_target
from truesync.connectors.rest.settings import RestConfig
from truesync.sandbox.api import ServerThread, crm_app, seed
from truesync.support.sqldb import open_engine

SYSTEM = "contract"
SECRET = "contract-s3cret-never-shown"
DAY = datetime(2026, 11, 1)
TIE_GROUP = 6  # records sharing one change time: more than a page and than a chunk
PAGE = 4
N = 24
MAPPING = EntityMapping(
    table="contacts",
    key="external_id",
    cursor="modified_at",
    fields={"customer_id": "external_id", "name": "display_name", "email": "email"},
)
MISSING = MAPPING.model_copy(update={"table": "nothing"})
REST_SETTINGS = {
    "auth": {"type": "bearer"},
    "retries": 1,
    "backoff_factor": 0,
    "connect_timeout": 2,
    "read_timeout": 5,
    "endpoints": {
        "contacts": {
            "path": "/contacts",
            "pagination": {"style": "cursor", "page_size": PAGE},
            "key_after_param": "key_after",
            "lookup": {"param": "external_id", "max_keys": PAGE},
            "read_only": ["modified_at"],
        },
        "nothing": {"path": "/nothing", "lookup": {"param": "external_id"}},
    },
}
SERVERS = {"postgresql": "postgres_url", "mysql": "mysql_url"}


def records() -> list[dict[str, Any]]:
    """N records, change times in groups of ``TIE_GROUP`` a minute apart."""
    return [
        {"external_id": f"C{i:03d}", "display_name": f"Contact {i}", "email": f"c{i}@example.com",
         "modified_at": DAY + timedelta(minutes=i // TIE_GROUP)}
        for i in range(N)
    ]  # fmt: skip


class Backend(ABC):
    """One kind on one backend: the system holding ``records()``, and how to make it refuse or vanish."""

    kind: str
    settings: Any = None

    def __init__(self, connection: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.monkeypatch, self.tmp_path = monkeypatch, tmp_path
        self.connect(connection)

    def connect(self, connection: str) -> None:
        """Point the system's Airflow connection at ``connection`` (a URL in the environment)."""
        self.monkeypatch.setenv(f"AIRFLOW_CONN_{SYSTEM.upper()}", connection)

    @property
    def config(self) -> Config:
        system = SystemConfig(kind=self.kind, connection=SYSTEM, settings=self.settings)
        return Config(directory=self.tmp_path, systems={SYSTEM: system}, entities={}, mappings={}, flows={})

    def source(self) -> Source:
        return open_source(self.config, SYSTEM)

    def target(self) -> Target:
        return open_target(self.config, SYSTEM)

    @abstractmethod
    def refused(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` made into one the target refuses."""

    @abstractmethod
    def unreachable(self) -> str:
        """A connection to this kind of system where nothing answers, carrying a secret."""


class SqlBackend(Backend):
    kind = "sql"

    def __init__(self, url: URL, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        super().__init__(url.render_as_string(hide_password=False), monkeypatch, tmp_path)
        self.url = url
        engine = open_engine(url)
        table = Table(
            "contacts",
            MetaData(),
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("external_id", String(20), nullable=False, unique=True),
            Column("display_name", String(40)),
            Column("email", String(60), nullable=False),
            Column("modified_at", DateTime),
            Column("deleted_at", DateTime),
        )
        Table("loose", table.metadata, Column("external_id", String(20)), Column("display_name", String(40)))
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), list(reversed(records())))  # stored out of order: the system sorts
        engine.dispose()

    def refused(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "email": None}  # the column is NOT NULL

    def unreachable(self) -> str:
        if self.url.get_backend_name() == "sqlite":
            return f"sqlite:///{self.tmp_path / 'no' / 'such' / 'dir' / 'system.db'}"
        return self.url.set(username="sync", password=SECRET, host="127.0.0.1", port=1).render_as_string(False)


class RestBackend(Backend):
    kind = "rest"
    settings = RestConfig.model_validate(REST_SETTINGS)

    def __init__(self, server: ServerThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        super().__init__(f"http://:{SECRET}@127.0.0.1:{server.port}", monkeypatch, tmp_path)
        self.server = server

    def refused(self, row: dict[str, Any]) -> dict[str, Any]:
        faults = requests.post(f"{self.server.url}/_faults", json={"reject": [row["external_id"]]}, timeout=5)
        faults.raise_for_status()
        return row

    def unreachable(self) -> str:
        return f"http://:{SECRET}@127.0.0.1:1"


def _rest_server() -> ServerThread:
    app = crm_app(SECRET)
    seed(app, {"contacts": [{**r, "modified_at": r["modified_at"].isoformat()} for r in records()]})
    return ServerThread(app).start()


@pytest.fixture(params=["sqlite", "postgresql", "mysql", "rest"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Backend]:
    """The fixture records in a fresh system of each kind and backend."""
    if request.param == "rest":
        server = _rest_server()
        yield RestBackend(server, monkeypatch, tmp_path)
        server.stop()
        return
    url = make_url(f"sqlite:///{tmp_path / 'system.db'}")
    if request.param in SERVERS:
        url = request.getfixturevalue(SERVERS[request.param])
    yield SqlBackend(url, monkeypatch, tmp_path)


def keys(frames: Iterator[pd.DataFrame]) -> list[str]:
    return [str(key) for frame in frames for key in frame[MAPPING.key]]


def expected(start: datetime, end: datetime) -> list[str]:
    return sorted(r["external_id"] for r in records() if start <= r["modified_at"] < end)


def _new(key: str, name: str = "New") -> dict[str, Any]:
    return {"external_id": key, "display_name": name, "email": f"{key.lower()}@example.com"}


def _by_key(target: Target, wanted: list[str]) -> dict[str, dict[str, Any]]:
    frame = target.fetch(MAPPING, wanted)
    return {str(row[MAPPING.key]): row for row in frame.to_dict("records")}


# --- reading ------------------------------------------------------------------------------------


def test_a_window_is_half_open_and_gives_each_record_once(backend: Backend) -> None:
    start, end = DAY + timedelta(minutes=1), DAY + timedelta(minutes=3)
    got = keys(backend.source().extract(MAPPING, start, end, PAGE))
    assert sorted(got) == expected(start, end)
    assert len(got) == len(set(got)) == 2 * TIE_GROUP, "the group at start is in, the group at end is out"


@pytest.mark.parametrize("size", [1, PAGE, 1000])
def test_ties_larger_than_a_page_or_a_chunk_are_all_read_once(backend: Backend, size: int) -> None:
    frames = list(backend.source().extract(MAPPING, DAY, DAY + timedelta(days=1), size))
    got = keys(iter(frames))
    assert sorted(got) == expected(DAY, DAY + timedelta(days=1)) and len(got) == N
    assert all(len(frame) <= size for frame in frames)


def test_an_empty_window_gives_no_records(backend: Backend) -> None:
    assert keys(backend.source().extract(MAPPING, DAY - timedelta(days=1), DAY, PAGE)) == []


def test_fetch_gives_exactly_the_asked_keys_it_holds(backend: Backend) -> None:
    wanted = ["C003", "C010", "C017", "C023", "C000", "NOPE"]
    for role in (backend.source(), backend.target()):
        frame = role.fetch(MAPPING, wanted)
        assert sorted(frame[MAPPING.key]) == sorted(wanted[:-1])
        assert set(MAPPING.columns) <= set(frame.columns)


def test_columns_describe_every_mapped_column_with_a_python_type(backend: Backend) -> None:
    columns = backend.target().columns(MAPPING)
    assert set(MAPPING.columns) <= set(columns)
    assert all(columns[c] in (str, None) for c in ("external_id", "display_name", "email"))
    assert all(kind is None or isinstance(kind, type) for kind in columns.values())


def test_describe_names_the_system_without_its_secret(backend: Backend) -> None:
    for role in (backend.source(), backend.target()):
        assert role.describe().startswith(f"system '{SYSTEM}' (") and SECRET not in role.describe()
        assert role.name == SYSTEM


def test_a_scan_gives_every_record_once_in_frames_of_the_asked_size(backend: Backend) -> None:
    for role in (backend.source(), backend.target()):
        frames = list(role.scan(MAPPING, PAGE + 1))
        assert sorted(keys(iter(frames))) == sorted(r["external_id"] for r in records())
        assert all(len(frame) <= PAGE + 1 for frame in frames)
        assert set(MAPPING.columns) <= set(frames[0].columns)


def test_a_target_with_a_unique_key_passes_the_compare_check(backend: Backend) -> None:
    backend.target().require_unique_key(MAPPING)


# --- writing ------------------------------------------------------------------------------------


def test_a_write_creates_then_updates_and_the_same_write_again_changes_nothing(backend: Backend) -> None:
    target = backend.target()
    target.columns(MAPPING)
    rows = [_new("N001"), _new("C005", "Renamed")]
    assert target.write(MAPPING, rows, batch_size=PAGE, run_id="run-1") == 2
    written = _by_key(target, ["N001", "C005", "C006"])
    assert (written["N001"]["display_name"], written["N001"]["email"]) == ("New", "n001@example.com")
    assert (written["C005"]["display_name"], written["C005"]["email"]) == ("Renamed", "c005@example.com")
    assert written["C006"]["display_name"] == "Contact 6", "a record not written is left as it was"

    assert target.write(MAPPING, rows, batch_size=PAGE, run_id="run-1") == 2
    assert _by_key(target, ["N001", "C005", "C006"]) == written
    assert len(target.fetch(MAPPING, ["N001"])) == 1


def test_a_refused_record_is_reported_by_key_and_the_others_are_written(backend: Backend) -> None:
    target = backend.target()
    rows = [_new("N001"), backend.refused(_new("BAD1")), _new("N002")]
    with pytest.raises(RecordsRejected) as caught:
        target.write(MAPPING, rows, batch_size=PAGE, run_id="run-1")
    assert list(caught.value.rejected) == ["BAD1"]
    assert f"system '{SYSTEM}'" in caught.value.rejected["BAD1"]
    assert sorted(_by_key(target, ["N001", "BAD1", "N002"])) == ["N001", "N002"]


# --- failing ------------------------------------------------------------------------------------


def _assert_secret_free(exc: BaseException) -> None:
    assert SECRET not in "".join(traceback.format_exception(exc)) + repr(exc)


def test_an_unreachable_system_is_unavailable_and_never_shows_its_secret(backend: Backend) -> None:
    backend.connect(backend.unreachable())
    source, target = backend.source(), backend.target()
    calls = {
        "columns": lambda: target.columns(MAPPING),
        "extract": lambda: list(source.extract(MAPPING, DAY, DAY + timedelta(days=1), PAGE)),
        "fetch": lambda: source.fetch(MAPPING, ["C001"]),
        "write": lambda: target.write(MAPPING, [_new("N001")], PAGE),
        "scan": lambda: list(source.scan(MAPPING, PAGE)),
    }
    for call, run in calls.items():
        with pytest.raises(SystemUnavailable) as caught:
            run()
        assert f"system '{SYSTEM}'" in str(caught.value), call
        _assert_secret_free(caught.value)
    assert SECRET not in source.describe()


def test_a_missing_table_or_endpoint_is_a_configuration_problem(backend: Backend) -> None:
    target = backend.target()
    with pytest.raises(ConfigurationProblem) as caught:
        target.columns(MISSING)
    assert f"system '{SYSTEM}'" in str(caught.value) and "nothing" in str(caught.value)
    _assert_secret_free(caught.value)
    with pytest.raises(ConfigurationProblem):
        target.fetch(MISSING, ["C001"])


# --- deleting (SQL only: a REST target takes 'deletes: report', see the configuration's check) ----------


def _sql(backend: Backend) -> Target:
    if backend.kind != "sql":
        pytest.skip("a REST target cannot delete records; the configuration allows it 'deletes: report' only")
    return backend.target()


def test_a_delete_removes_exactly_the_given_keys_it_holds(backend: Backend) -> None:
    target = _sql(backend)
    assert target.delete(MAPPING, ["C003", "C004", "NOPE"]) == 2
    assert sorted(_by_key(target, ["C002", "C003", "C004", "C005"])) == ["C002", "C005"]


def test_a_soft_delete_marks_the_rows_and_a_scan_leaves_them_out(backend: Backend) -> None:
    target = _sql(backend)
    assert target.mark_deleted(MAPPING, ["C001", "C002", "NOPE"], "deleted_at", DAY) == 2
    live = keys(target.scan(MAPPING, PAGE, ("deleted_at", None)))
    assert sorted(live) == sorted(r["external_id"] for r in records() if r["external_id"] not in ("C001", "C002"))
    assert len(target.fetch(MAPPING, ["C001"])) == 1, "a soft-deleted row stays in the table"
    by_value = keys(target.scan(MAPPING, PAGE, ("display_name", "Contact 7")))
    assert "C007" not in by_value and len(by_value) == N - 1


def test_a_soft_delete_column_the_table_lacks_is_a_configuration_problem(backend: Backend) -> None:
    target = _sql(backend)
    with pytest.raises(ConfigurationProblem, match="no column gone_at"):
        target.mark_deleted(MAPPING, ["C001"], "gone_at", DAY)


def test_a_target_table_without_a_unique_key_is_refused_by_name(backend: Backend) -> None:
    target = _sql(backend)
    loose = EntityMapping(table="loose", key="external_id", fields={"customer_id": "external_id"})
    with pytest.raises(ConfigurationProblem) as caught:
        target.require_unique_key(loose)
    message = str(caught.value)
    assert f"system '{SYSTEM}'" in message and "table 'loose' has no unique key" in message
    _assert_secret_free(caught.value)
    assert not target.scans_each_key_once(loose), "a table without a unique key may hold a key twice"
    assert target.scans_each_key_once(MAPPING)
