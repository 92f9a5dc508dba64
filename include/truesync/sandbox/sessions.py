"""One sandbox session under a root directory, for the fault suite and the month of daily runs:
its state, a copy of the shipped configuration with some flow settings changed, and the
connections to its systems."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from truesync.sandbox import systems as sandbox
from truesync.support.paths import PROJECT_ROOT

SHIPPED_CONFIG = PROJECT_ROOT / "include" / "config"


def configured(target: Path, settings: dict[str, Any], config_dir: Path = SHIPPED_CONFIG) -> Path:
    """A copy of the configuration in ``target`` whose every flow takes ``settings`` (flow keys and values)."""
    shutil.copytree(config_dir, target, dirs_exist_ok=True)
    flows = target / "flows.yaml"
    document = yaml.safe_load(flows.read_text())
    for spec in document["flows"].values():
        spec.update(settings)
    flows.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


def session_environment(root: Path, settings: dict[str, Any], databases: list[str] | None = None) -> dict[str, str]:
    """The environment of one session under ``root``: its state, the configuration with ``settings``
    and the sandbox systems as SQLite files; with ``databases`` (three fresh PostgreSQL URLs) the
    store and both SQL targets (crm, stockctl) live there instead."""
    state = root / "state"
    env = {
        "TRUESYNC_STATE_DIR": str(state),
        "TRUESYNC_CONFIG_DIR": str(configured(root / "config", settings)),
        **sandbox.local_connections(state),
    }
    if databases:
        for system, url in zip(("STORE", "CRM", "STOCKCTL"), databases, strict=True):
            env[f"AIRFLOW_CONN_TRUESYNC_{system}"] = url
    return env
