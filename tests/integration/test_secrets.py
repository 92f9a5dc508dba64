"""A canary secret in every connection never appears anywhere truesync writes or prints.

The SQL systems (PostgreSQL targets), the store (PostgreSQL) and the two REST APIs all get one
password or token, a canary with characters URL-encoding changes. The flows run with failures
forced: REST calls that fail until the retries give up, an unreachable database, rows the target
refuses, held records. Then the canary is searched for, raw, URL-encoded (both ways) and in
base64 (alone and as HTTP basic credentials), in everything a person can read: the CLI's output
of every reviewing command, the log records, every file under the state directory (reports as
JSON and HTML, Data Docs, progress logs) and every row of every store table (the exception
queue, results, audit, run reports). The Airflow side (task logs, XCom) is checked in
``tests/airflow/test_airflow_e2e.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from canary import CANARY, leaks, with_canary
from conftest import ServerDatabases
from sandbox_demo import DEMO_START
from sqlalchemy import MetaData, select
from sqlalchemy.engine import URL

from truesync import cli
from truesync.config import load_config
from truesync.sandbox import rest as sandboxrest
from truesync.sandbox import systems as sandbox
from truesync.sandbox.api import ServerThread
from truesync.store import Store, queue

DAY = DEMO_START.isoformat()
UNTIL = (DEMO_START + timedelta(days=sandbox.DEMO_DAYS)).isoformat()


@pytest.fixture
def servers(
    state: Path, postgres_databases: ServerDatabases, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, ServerThread]]:
    """The sandbox with PostgreSQL targets and store, and REST APIs that want the canary as token."""
    for system in ("STORE", "CRM", "STOCKCTL"):
        monkeypatch.setenv(f"AIRFLOW_CONN_TRUESYNC_{system}", with_canary(postgres_databases.new()))
    assert cli.main(["sandbox", "init", "--scale", "100"]) == 0
    served = sandboxrest.serve(state / "sandbox", "127.0.0.1", 0, 0, CANARY)
    for system, server in served.items():
        monkeypatch.setenv(
            f"AIRFLOW_CONN_TRUESYNC_{system.upper()}", f"http://:{quote(CANARY, safe='')}@127.0.0.1:{server.port}"
        )
    yield served
    for server in served.values():
        server.stop()


def _store_text(store: Store) -> str:
    """Every row of every table of the store, as text."""
    metadata = MetaData()
    metadata.reflect(store.engine)
    with store.engine.connect() as conn:
        return "\n".join(str(row) for table in metadata.sorted_tables for row in conn.execute(select(table)))


def _files_text(state: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(state.rglob("*")) if p.is_file())


def test_a_canary_secret_in_every_connection_appears_nowhere(
    servers: dict[str, ServerThread],
    state: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    window = ["--start", DAY, "--end", UNTIL]
    assert cli.main(["run", "webshop_to_crm", *window]) == 0
    faults = servers["crm_api"].url + "/_faults"
    requests.post(faults, json={"server_error": 1000}, timeout=5).raise_for_status()
    assert cli.main(["run", "webshop_to_crm_api", *window]) != 0, "the CRM API fails until the retries give up"
    requests.post(faults, json={"server_error": 0}, timeout=5).raise_for_status()
    assert cli.main(["run", "webshop_to_crm_api", *window, "--run-id", "webshop_to_crm_api:again"]) == 0
    assert cli.main(["run", "payments_to_crm_api", *window]) == 0
    unreachable = URL.create("postgresql+psycopg2", "postgres", CANARY, "127.0.0.1", 1, "erp")
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_ERP", unreachable.render_as_string(hide_password=False))
    assert cli.main(["run", "erp_to_stockctl", *window]) != 0, "the ERP is unreachable"

    store = Store()
    held = queue.list_exceptions(store, flow="webshop_to_crm")
    assert held, "some records are held"
    traced = next(e for e in held if not e["key"].startswith("null-key"))
    for command in (
        ["report", "--flow", "webshop_to_crm"],
        ["report", "--flow", "webshop_to_crm_api", "--json"],
        ["runs"],
        ["summary"],
        ["exceptions", "list"],
        ["exceptions", "list", "--json"],
        ["exceptions", "show", str(held[0]["id"])],
        ["trace", "webshop_to_crm", traced["entity"], traced["key"], "--json"],
        ["store", "migrate"],
        ["preflight"],
        ["config", "check"],
    ):
        cli.main(command)
    output = capsys.readouterr()
    assert "error" in (output.out + output.err).lower() or "unavailable" in (output.out + output.err).lower()

    assert not leaks(output.out + output.err), "the CLI's output"
    assert not leaks("\n".join(r.getMessage() for r in caplog.records)), "the log records"
    assert not leaks(_files_text(state)), "a file under the state directory (reports, Data Docs, logs)"
    assert not leaks(_store_text(store)), "a row of the store"
    assert load_config().flows, "the configuration was read throughout"
