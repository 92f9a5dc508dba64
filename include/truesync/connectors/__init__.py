"""Connectors by system kind; a new kind of system is a new module registered here."""

from __future__ import annotations

from truesync.config import Config
from truesync.connections import ConnectionNotFound, http_connection, sqlalchemy_url
from truesync.connectors.base import ConfigurationProblem, Connector, SystemUnavailable
from truesync.connectors.rest import RestSystem
from truesync.connectors.sql import SqlSystem

__all__ = ["ConfigurationProblem", "Connector", "SystemUnavailable", "open_system"]


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
