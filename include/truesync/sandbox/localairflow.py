"""Run real Airflow on this machine: api-server, scheduler and dag-processor as processes.

Used by ``make demo`` and by the end-to-end tests, which must exercise Airflow itself
(a backfill created with ``airflow backfill create`` and executed by a real scheduler),
not call the engine directly. Only the processes started here are stopped, with all they
started: each starts a process group of its own. Airflow CLI commands run in one interpreter
per batch (``cli_each``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from truesync.config import load_config
from truesync.pipeline.dags import preloaded_workers, target_pools
from truesync.support.paths import PROJECT_ROOT
from truesync.support.sqldb import open_engine

# What ``airflow.__main__`` does for one command, for each command of a JSON list of argument lists.
_CLI_EACH = """
import json, sys
from airflow import configuration
from airflow.cli import cli_parser
from truesync.sandbox.airflow_cli import run_commands
configuration.write_default_airflow_configuration_if_needed()
run_commands(cli_parser.get_parser(), json.loads(sys.argv[1]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_bin() -> str:
    """The ``airflow`` next to this interpreter: Airflow starts its children by that name."""
    candidate = Path(sys.executable).parent / "airflow"
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # nothing of the group is left
        os.killpg(group, signum)


def _utc(value: datetime | str) -> datetime:
    """A metadata DB timestamp (a string on SQLite) as naive UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@dataclass
class LocalAirflow:
    home: Path
    port: int = field(default_factory=free_port)
    log_server_port: int = field(default_factory=free_port)
    executor: str = "LocalExecutor"
    # False (the demo's backfill, the tests): the scheduler creates no runs from the DAGs' timetables
    # (``scheduler.use_job_schedule``), so backfills and manual runs are alone, not raced by the latest
    # interval's run that unpausing starts. ``make up`` turns them on.
    schedules: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """Environment shared by every Airflow command and process of this installation."""
        secret_file = self.home / "jwt_secret"
        if not secret_file.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secrets.token_hex(32))
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_server_port),
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
                "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text(),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(self.schedules),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # task logs carry the engine's progress lines
                "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "alembic=WARNING",  # the store's schema check, every task
                **preloaded_workers(),
            }
        )
        env.update(self.extra_env)
        if self._metadata_url(env).startswith("sqlite"):  # Airflow's own default: 5 s, short beside a busy scheduler
            env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "truesync.support.sqldb.SQLITE_CONNECT_ARGS")
        return env

    @property
    def metadata_url(self) -> str:
        return self._metadata_url(self.env)

    def _metadata_url(self, env: dict[str, str]) -> str:
        return env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{self.home / 'airflow.db'}")

    def cli(self, *args: str, timeout: float = 300) -> str:
        """Run an ``airflow`` CLI command; raise with its output when it fails."""
        return self.cli_each([list(args)], timeout)

    def cli_each(self, commands: list[list[str]], timeout: float = 300) -> str:
        """Run ``airflow`` CLI commands one after the other in one interpreter, each as ``airflow``
        runs it: Airflow is imported once instead of once per command (seconds each). Stops at
        the first that fails, and raises with the output. A command a SQLite metadata DB refuses
        as locked is run again (``airflow_cli.run_commands``)."""
        done = subprocess.run(
            [sys.executable, "-c", _CLI_EACH, json.dumps(commands)],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            shown = "; ".join(" ".join(c) for c in commands)
            raise RuntimeError(f"airflow {shown} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def migrate(self) -> None:
        """Migrate the metadata DB and create or resize the target systems' pools: no DAG runs without them."""
        self.cli_each(self._migrate())

    def _migrate(self) -> list[list[str]]:
        self.home.mkdir(parents=True, exist_ok=True)
        pools = self.home / "pools.json"
        pools.write_text(json.dumps(target_pools(load_config()), indent=2))
        return [["db", "migrate"], ["pools", "import", str(pools)]]

    def prepare(self, dag_ids: list[str]) -> None:
        """Migrate the metadata DB, create the pools, serialize the DAGs and unpause them.

        A SQLite metadata DB is put in WAL mode, as truesync's own (``support.sqldb``; the file keeps
        the mode): in its default journal, a CLI command that writes beside the scheduler's heartbeats
        can be refused at once with "database is locked", since SQLite skips the busy wait where
        waiting could deadlock.
        """
        self.cli_each([*self._migrate(), ["dags", "reserialize"], *(["dags", "unpause", d] for d in dag_ids)])
        if self.metadata_url.startswith("sqlite"):
            engine = open_engine(self.metadata_url)
            with engine.connect():  # opening a connection sets journal_mode=WAL
                pass
            engine.dispose()

    def start(self, components: tuple[str, ...] = ("api-server", "scheduler", "dag-processor")) -> None:
        """Start the components (``celery-worker`` may be repeated) and wait for the api-server."""
        logs = self.home / "process-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for number, component in enumerate(components):
            args, name, env = [airflow_bin(), component], component, self.env
            if component == "api-server":
                args += ["--port", str(self.port), "--host", "127.0.0.1"]
            if component == "celery-worker":
                name = f"celery-worker-{number}"
                args = [airflow_bin(), "celery", "worker", "--concurrency", "1", "--celery-hostname", f"{name}@%h"]
            with (logs / f"{name}.log").open("ab") as log:
                self.processes.append(
                    subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                )
        self._wait_for_api()

    def _wait_for_api(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - localhost only
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(2)
        raise TimeoutError(f"Airflow api-server did not answer on {url} within {timeout:.0f}s")

    def _check_alive(self) -> None:
        for proc in self.processes:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(proc.args[1:2])} exited with {proc.returncode}; see {self.home}")

    def backfill(self, dag_ids: list[str], from_date: str, to_date: str, reprocess: str = "none") -> None:
        """One backfill per DAG over the same dates, each running one DAG run at a time."""
        self.cli_each(
            [["backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date,
              "--reprocess-behavior", reprocess, "--max-active-runs", "1"] for dag_id in dag_ids]
        )  # fmt: skip

    def query(self, sql: str, **params: str) -> list[tuple]:
        """Rows of a query on the metadata database."""
        engine = create_engine(self.metadata_url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def dag_runs(self, dag_id: str) -> list[tuple[str, str]]:
        """(run id, state) of every run of the DAG, in the order they were created."""
        return self.query("SELECT run_id, state FROM dag_run WHERE dag_id = :d ORDER BY id", d=dag_id)

    def backfill_runs(self, dag_id: str) -> list[tuple[str, str, int]]:
        """(run id, state, clear number) of the DAG's backfill runs, in the order they were queued."""
        return self.query(
            "SELECT run_id, state, clear_number FROM dag_run WHERE dag_id = :d AND run_type = 'backfill' ORDER BY id",
            d=dag_id,
        )

    def task_intervals(self, dag_id: str, run_id: str) -> list[tuple[str, datetime, datetime]]:
        """(task id with map index, start, end) of a DAG run's succeeded task instances, in naive UTC."""
        rows = self.query(
            "SELECT task_id, map_index, start_date, end_date FROM task_instance"
            " WHERE dag_id = :d AND run_id = :r AND state = 'success'",
            d=dag_id,
            r=run_id,
        )
        return [(f"{task}[{index}]", _utc(start), _utc(end)) for task, index, start, end in rows]

    def retried_attempts(self, dag_id: str, run_id: str) -> int:
        """How many of a DAG run's task instances Airflow ran more than once."""
        return int(
            self.query(
                "SELECT COUNT(*) FROM task_instance WHERE dag_id = :d AND run_id = :r AND try_number > 1",
                d=dag_id,
                r=run_id,
            )[0][0]
        )

    def run_span(self, dag_id: str, run_id: str) -> tuple[datetime, datetime]:
        """When a DAG run started running and when it ended, in naive UTC."""
        ((start, end),) = self.query(
            "SELECT start_date, end_date FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id
        )
        return _utc(start), _utc(end)

    def asset_events(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(Asset URI, source DAG, source run id, extra) of every Asset event, oldest first."""
        rows = self.query(
            "SELECT a.uri, e.source_dag_id, e.source_run_id, e.extra FROM asset_event e"
            " JOIN asset a ON a.id = e.asset_id ORDER BY e.id"
        )
        return [(uri, dag, run, json.loads(extra) if isinstance(extra, str) else extra)
                for uri, dag, run, extra in rows]  # fmt: skip

    def trigger(self, dag_id: str, run_id: str, conf: str = "{}") -> None:
        """A manual run without a logical date, as a person triggers it from the UI."""
        self.cli("dags", "trigger", dag_id, "--run-id", run_id, "--conf", conf)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """Wait until one DAG run has finished; returns its state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.query("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id)
            if state and state[0][0] in ("success", "failed"):
                return str(state[0][0])
            time.sleep(3)
        raise TimeoutError(f"run {run_id} of {dag_id} not finished after {timeout:.0f}s")

    def _open_backfills(self, dag_id: str) -> int:
        return self.query("SELECT COUNT(*) FROM backfill WHERE dag_id = :d AND completed_at IS NULL", d=dag_id)[0][0]

    def wait_for_backfills(self, dag_ids: list[str], timeout: float = 900) -> dict[str, list]:
        """Wait until the scheduler has finished every backfill of the DAGs and closed it."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if all(self._open_backfills(d) == 0 for d in dag_ids):
                return {d: self.backfill_runs(d) for d in dag_ids}
            if time.monotonic() > deadline:
                states = {d: self.backfill_runs(d) for d in dag_ids}
                raise TimeoutError(f"backfills not finished after {timeout:.0f}s: {states}")
            time.sleep(3)

    def stop(self) -> None:
        """Stop the processes this object started and all they started (their whole process groups,
        also when a group's first process has exited: the scheduler's workers outlive it), nothing else."""
        for proc in self.processes:
            _signal_group(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            _signal_group(proc.pid, signal.SIGKILL)  # whatever of the group outlived the SIGTERM
            proc.wait()
        self.processes.clear()
