"""Airflow CLI commands run one after the other in one interpreter (``localairflow.LocalAirflow.cli_each``).

Imported by that interpreter, so it imports nothing of truesync's engine, only the package
(and its pandas settings, about 0.3 s beside Airflow's own import).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.exc import OperationalError

LOCKED_TRIES = 5  # runs of a command a SQLite metadata DB refuses as locked (``run_commands``)


def run_commands(parser: Any, commands: list[list[str]], pause: float = 1.0) -> None:
    """Run each Airflow CLI command (argument list) through ``parser``, in order; stop at the first that fails.

    A command that a SQLite metadata DB refuses with "database is locked" is run again, up to
    ``LOCKED_TRIES`` times ``pause`` seconds apart: in WAL mode SQLite refuses at once, with no
    busy wait, a transaction that read before another connection's last write and then writes
    itself (seen on ``backfill create`` beside a busy scheduler). The refused transaction was
    rolled back, so the command starts over from nothing.
    """
    for argv in commands:
        for attempt in range(1, LOCKED_TRIES + 1):
            try:
                args = parser.parse_args(argv)
                args.func(args)
                break
            except OperationalError as exc:
                if "database is locked" not in str(exc) or attempt == LOCKED_TRIES:
                    raise
                time.sleep(pause)
