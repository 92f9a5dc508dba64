"""`make up`: the Airflow UI on the demo's state (``airflow standalone``), until Ctrl-C."""

from __future__ import annotations

import os
import sys

from truesync.sandbox.localairflow import LocalAirflow, airflow_bin
from truesync.support.paths import state_dir

PORT = int(os.environ.get("TRUESYNC_UI_PORT", "8080"))


def main() -> None:
    airflow = LocalAirflow(state_dir() / "airflow", port=PORT, schedules=True)
    airflow.migrate()  # the metadata DB and the pools first: a task whose pool is missing never runs
    env = airflow.env
    passwords = airflow.home / "simple_auth_manager_passwords.json.generated"
    print(f"Airflow UI: http://127.0.0.1:{PORT}  (user 'admin'; password in {passwords} once it starts)")
    print("Stop with Ctrl-C.", flush=True)
    os.execvpe(airflow_bin(), [airflow_bin(), "standalone"], env)


if __name__ == "__main__":
    sys.exit(main())
