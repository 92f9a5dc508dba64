"""State directories for one test or one module, and the check that a setup shared by a module stays as built.

A setup that several tests of a module only read (the sandbox after the demo days, runs and
their pages) is built once per module in its own directory; tests that change the systems,
the store or the files keep a sandbox of their own (the ``state`` fixture).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sandbox_demo import Demo

from truesync.sandbox import systems as sandbox


def point_at_state(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    """Point the environment at ``root/state``: the store and the sandbox systems as SQLite files in it."""
    monkeypatch.setenv("TRUESYNC_STATE_DIR", str(root / "state"))
    monkeypatch.delenv("AIRFLOW_CONN_TRUESYNC_STORE", raising=False)
    for name, url in sandbox.local_connections(root / "state").items():
        monkeypatch.setenv(name, url)
    return root / "state"


def put_on_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, system: str) -> None:
    """Move one sandbox system to a fresh database on the server the parameter names.

    ``request.param`` is ``sqlite`` (nothing moves), ``postgresql`` (the store moves there too)
    or ``mariadb``.
    """
    variable = f"AIRFLOW_CONN_TRUESYNC_{system.upper()}"
    if request.param == "postgresql":
        databases = request.getfixturevalue("postgres_databases")
        monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_STORE", databases.new().render_as_string(False))
        monkeypatch.setenv(variable, databases.new().render_as_string(False))
    elif request.param == "mariadb":
        monkeypatch.setenv(variable, request.getfixturevalue("mysql_url").render_as_string(False))


@contextmanager
def module_state(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """The ``state`` of a module-scoped fixture: a directory of its own, the environment pointed at it meanwhile.

    A test of the module that takes ``state`` points the environment at its own directory and
    back again afterwards. One such setup per module: two would share the environment.
    """
    with pytest.MonkeyPatch.context() as patch:
        yield point_at_state(patch, factory.mktemp(name))


@contextmanager
def left_as_is(demo: Demo, what: str) -> Iterator[None]:
    """Fail the test inside if it changed the systems, the store or the files of a setup its module shares."""
    before = demo.fingerprint()
    yield
    if demo.fingerprint() != before:
        pytest.fail(f"the test changed {what}, which the tests of its module share: give it a sandbox of its own")
