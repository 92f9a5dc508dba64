"""Where truesync finds its configuration and keeps its state.

Both locations can be moved by environment variables so that tests, the demo and a
production deployment never share files by accident.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def config_dir() -> Path:
    """``TRUESYNC_CONFIG_DIR``, else ``include/config`` of the project."""
    return Path(os.environ.get("TRUESYNC_CONFIG_DIR", PROJECT_ROOT / "include" / "config"))


def state_dir() -> Path:
    """``TRUESYNC_STATE_DIR``, else ``state/`` of the project; created on first use."""
    path = Path(os.environ.get("TRUESYNC_STATE_DIR", PROJECT_ROOT / "state"))
    path.mkdir(parents=True, exist_ok=True)
    return path
