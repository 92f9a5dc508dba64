"""The local Airflow installation (``sandbox.localairflow``): what its environment tells Airflow, and how
its CLI commands are run (``sandbox.airflow_cli``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.configuration import conf
from sqlalchemy.exc import OperationalError

from truesync.sandbox.airflow_cli import LOCKED_TRIES, run_commands
from truesync.sandbox.localairflow import LocalAirflow
from truesync.support.sqldb import SQLITE_CONNECT_ARGS

SETTING = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"


def test_airflows_sqlite_metadata_waits_for_a_lock_as_long_as_truesyncs_own_engines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = LocalAirflow(home=tmp_path / "airflow")
    assert local.metadata_url.startswith("sqlite")
    monkeypatch.setenv(SETTING, local.env[SETTING])
    assert conf.getimport("database", "sql_alchemy_connect_args") is SQLITE_CONNECT_ARGS, "as Airflow reads it"
    assert SQLITE_CONNECT_ARGS["timeout"] == 60


def test_a_postgresql_metadata_database_gets_no_sqlite_setting(tmp_path: Path) -> None:
    url = "postgresql+psycopg2://airflow@127.0.0.1/airflow"
    local = LocalAirflow(home=tmp_path / "airflow", extra_env={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url})
    assert local.metadata_url == url and SETTING not in local.env


class _Parser:
    """An Airflow CLI parser stand-in: each command's function raises the next of ``errors``, then succeeds."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.calls = errors, []

    def parse_args(self, argv: list[str]) -> Any:
        return SimpleNamespace(func=lambda args: self._run(argv))

    def _run(self, argv: list[str]) -> None:
        self.calls.append(argv[0])
        if self.errors:
            raise self.errors.pop(0)


def _locked() -> OperationalError:
    return OperationalError("INSERT INTO dag_run …", {}, sqlite3.OperationalError("database is locked"))


def test_a_command_the_metadata_db_refuses_as_locked_runs_again_and_the_next_follows() -> None:
    parser = _Parser([_locked(), _locked()])
    run_commands(parser, [["backfill"], ["pools"]], pause=0)
    assert parser.calls == ["backfill", "backfill", "backfill", "pools"]


def test_any_other_failure_or_a_lock_that_lasts_stops_the_commands() -> None:
    other = OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: dag_run"))
    parser = _Parser([other])
    with pytest.raises(OperationalError, match="no such table"):
        run_commands(parser, [["backfill"], ["pools"]], pause=0)
    assert parser.calls == ["backfill"]
    parser = _Parser([_locked() for _ in range(LOCKED_TRIES)])
    with pytest.raises(OperationalError, match="database is locked"):
        run_commands(parser, [["backfill"], ["pools"]], pause=0)
    assert parser.calls == ["backfill"] * LOCKED_TRIES
