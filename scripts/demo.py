"""`make demo`: seed the sandbox, backfill every flow through a real Airflow, summarise.

Serves the sandbox REST APIs (CRM, payment gateway) on free local ports for the length of
the demo, with the Airflow connections of the REST systems pointing at them. Starts an
api-server, a scheduler and a dag-processor under ``state/airflow``, creates
one backfill per flow DAG over the demo days with ``airflow backfill create``, waits for
the scheduler to execute them, prints the counts per flow x entity x class and where the
reports are, then stops what it started.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import timedelta
from typing import Any

from truesync.cli import main as truesync
from truesync.config import load_config
from truesync.sandbox import api as sandboxapi
from truesync.sandbox import rest as sandboxrest
from truesync.sandbox import systems as sandbox
from truesync.sandbox.localairflow import LocalAirflow
from truesync.support.connections import env_var
from truesync.support.paths import state_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=1000)
    args = parser.parse_args()
    config = load_config()
    dag_ids = [f"truesync_{flow}" for flow in config.flows]
    first, last = sandbox.DEMO_START, sandbox.DEMO_START + timedelta(days=sandbox.DEMO_DAYS - 1)
    print(f"== seeding the sandbox ({args.scale} customers) ==", flush=True)
    if truesync(["sandbox", "init", "--scale", str(args.scale)]) != 0:
        return 1
    servers = sandboxrest.serve(state_dir() / "sandbox", "127.0.0.1", 0, 0, sandboxapi.DEFAULT_TOKEN)
    try:
        connections = {}
        for system, server in servers.items():
            print(f"== sandbox API {system} at {server.url} ==", flush=True)
            connections[env_var(config.systems[system].connection)] = (
                f"http://:{sandboxapi.DEFAULT_TOKEN}@{server.host}:{server.port}"
            )
        states = _backfill(dag_ids, first.isoformat(), last.isoformat(), connections)
    finally:
        for server in servers.values():
            server.stop()
    for dag_id, dag_runs in states.items():
        print(f"{dag_id}: " + ", ".join(f"{run_id} {state}" for run_id, state, _ in dag_runs))
    print("== summary over the backfill ==", flush=True)
    truesync(["summary"])
    print("exception queue: truesync exceptions list  |  UI and dashboard: make up, then truesync in the menu")
    failed = [run for runs in states.values() for run in runs if run[1] != "success"]
    return 1 if failed else 0


def _backfill(dag_ids: list[str], first: str, last: str, connections: dict[str, str]) -> Any:
    airflow = LocalAirflow(state_dir() / "airflow", extra_env=connections)
    print(f"== preparing Airflow in {airflow.home} ==", flush=True)
    airflow.prepare(dag_ids)
    print(f"== creating backfills {first} .. {last} ==", flush=True)
    airflow.backfill(dag_ids, first, last)
    airflow.start()
    try:
        print(f"== the scheduler runs the backfills (api-server on port {airflow.port} until they end) ==", flush=True)
        return airflow.wait_for_backfills(dag_ids)
    finally:
        airflow.stop()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        sys.exit(1)
