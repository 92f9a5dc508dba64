"""Opening a system by its kind; a new kind of system is a new module registered here."""

from __future__ import annotations

from truesync.config import Config
from truesync.connectors.base import Connector
from truesync.connectors.errors import ConfigurationProblem
from truesync.connectors.rest.system import RestSystem
from truesync.connectors.sql import SqlSystem
from truesync.support.connections import ConnectionNotFound, http_connection, sqlalchemy_url


def open_system(config: Config, name: str) -> Connector:
    """A connector for the named system, its credentials taken from its Airflow connection."""
    system = config.systems[name]
    try:
        if system.rest is not None:
            return RestSystem(name, system.rest, http_connection(system.connection))
        url = sqlalchemy_url(system.connection)
    except ConnectionNotFound as exc:
        raise ConfigurationProblem(f"system '{name}': {exc}") from exc
    return SqlSystem(name, url)
