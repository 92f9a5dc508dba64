"""Opening a system in its role: the kind registered for it (``kinds``) builds its connector.

The connector class reads its own connection (a SQLAlchemy URL, an HTTP base URL and
secret, ...); a connection that cannot be found is a configuration problem of the system.
"""

from __future__ import annotations

from typing import Any

from truesync.config import Config
from truesync.connectors.base import Source, Target
from truesync.connectors.errors import ConfigurationProblem
from truesync.connectors.kinds import KINDS
from truesync.support.connections import ConnectionNotFound


def open_source(config: Config, name: str) -> Source:
    """The named system as a source, its credentials taken from its Airflow connection."""
    return _open(config, name)


def open_target(config: Config, name: str) -> Target:
    """The named system as a target, its credentials taken from its Airflow connection."""
    return _open(config, name)


def _open(config: Config, name: str) -> Any:
    system = config.systems[name]
    connector = KINDS[system.kind].connector_class()
    try:
        return connector.open(name, system.settings, system.connection)
    except ConnectionNotFound as exc:
        raise ConfigurationProblem(f"system '{name}': {exc}") from exc
