"""Opening a system in its role: the kind registered for it (``kinds``) builds its connector.

The connector class reads its own connection (a SQLAlchemy URL, an HTTP base URL and
secret, ...); a connection that cannot be found is a configuration problem of the system.
``ceilings`` gives a rate-limited system the ceiling every worker shares (the pipeline's are
the store's); without it a system's ceiling holds for its process only.
"""

from __future__ import annotations

from typing import Any

from truesync.config import Config
from truesync.connectors.base import Ceilings, RateLimited, Source, Target
from truesync.connectors.errors import ConfigurationProblem
from truesync.connectors.kinds import KINDS
from truesync.support.connections import ConnectionNotFound


def open_source(config: Config, name: str, ceilings: Ceilings | None = None) -> Source:
    """The named system as a source, its credentials taken from its Airflow connection."""
    return _open(config, name, ceilings)


def open_target(config: Config, name: str, ceilings: Ceilings | None = None) -> Target:
    """The named system as a target, its credentials taken from its Airflow connection."""
    return _open(config, name, ceilings)


def _open(config: Config, name: str, ceilings: Ceilings | None) -> Any:
    system = config.systems[name]
    connector = KINDS[system.kind].connector_class()
    try:
        opened = connector.open(name, system.settings, system.connection)
    except ConnectionNotFound as exc:
        raise ConfigurationProblem(f"system '{name}': {exc}") from exc
    if ceilings is not None and isinstance(opened, RateLimited):
        opened.share_ceiling(ceilings)
    return opened
