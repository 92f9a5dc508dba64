"""Failpoints: named places in the engine where the fault suite (``make chaos``) kills a task.

Each is a no-op unless the environment variable ``TRUESYNC_FAILPOINTS`` names a plan file: a
JSON object from a failpoint's name to the run ids (or parts of them) whose task dies there,
each with what dies: ``task``, the task process sends itself ``SIGKILL`` (``kill -9``: no
cleanup, no ``finally``, an open transaction cut off), as a crashed task would; ``worker``, it
kills its parent first, the task supervisor that reports to Airflow, as a worker host that dies
whole. A marker file beside the plan, made before the kill, records the hit, so the retried
task passes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

PLAN_ENV = "TRUESYNC_FAILPOINTS"
TASK, WORKER = "task", "worker"  # what a planned kill kills


def failpoint(name: str, run_id: str) -> None:
    """Kill this process here if the plan says so for ``run_id``, the first time only."""
    plan = os.environ.get(PLAN_ENV)
    if not plan:
        return
    planned: dict[str, str] = json.loads(Path(plan).read_text()).get(name, {})
    wanted = [part for part in planned if part in run_id]
    if not wanted:
        return
    marker = Path(plan).with_name(f"hit-{hashlib.sha256(f'{name} {wanted[0]}'.encode()).hexdigest()[:16]}.json")
    try:
        handle = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    what = planned[wanted[0]]
    hit = {"point": name, "run_id": run_id, "kills": what, "pid": os.getpid(), "at": time.time()}
    os.write(handle, json.dumps(hit).encode())
    os.close(handle)
    if what == WORKER:
        os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
