"""The local Airflow installation (``sandbox.localairflow``): what its environment tells Airflow."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.configuration import conf

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
