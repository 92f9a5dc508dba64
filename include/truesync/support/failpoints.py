"""Failpoints: named places in the engine where the fault suite (``make chaos``) kills a task.

Each is a no-op unless the environment variable ``TRUESYNC_FAILPOINTS`` names a plan file: a
JSON object from a failpoint's name to the run ids (or parts of them) whose task process dies
there. A task that reaches a planned failpoint sends itself ``SIGKILL`` (``kill -9``: no
cleanup, no ``finally``, an open transaction cut off), as a crashed worker would; a marker file
beside the plan, made before the kill, records the hit, so the retried task passes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

PLAN_ENV = "TRUESYNC_FAILPOINTS"


def failpoint(name: str, run_id: str) -> None:
    """Kill this process here if the plan says so for ``run_id``, the first time only."""
    plan = os.environ.get(PLAN_ENV)
    if not plan:
        return
    wanted = [part for part in json.loads(Path(plan).read_text()).get(name, []) if part in run_id]
    if not wanted:
        return
    marker = Path(plan).with_name(f"hit-{hashlib.sha256(f'{name} {wanted[0]}'.encode()).hexdigest()[:16]}.json")
    try:
        handle = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(handle, json.dumps({"point": name, "run_id": run_id, "pid": os.getpid(), "at": time.time()}).encode())
    os.close(handle)
    os.kill(os.getpid(), signal.SIGKILL)
