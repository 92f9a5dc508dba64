"""Turn an Airflow connection id into a SQLAlchemy URL, without needing a running Airflow.

Airflow itself reads connections from ``AIRFLOW_CONN_<ID>`` environment variables, its
secrets backends and its metadata database. The engine first honours the environment
variable (so the engine, the CLI and the tests work without Airflow), then asks Airflow.
The store, the sandbox and SQL systems read URLs here; other kinds read their connections
in their own package (``connectors/<kind>/``) with ``env_var`` and ``airflow_connection``.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy.engine import URL, make_url

_DRIVERS = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "sqlite": "sqlite",
}


class ConnectionNotFound(LookupError):
    """No URL could be found for a connection id."""


def env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def sqlalchemy_url(conn_id: str) -> URL:
    """The SQLAlchemy URL of an Airflow connection, with the driver truesync installs."""
    raw = os.environ.get(env_var(conn_id))
    url = _from_text(raw) if raw else _from_airflow(conn_id)
    return _with_driver(url)


def _from_text(raw: str) -> URL:
    try:
        return make_url(raw.strip())
    except Exception as exc:  # noqa: BLE001 - the URL text itself must never be echoed
        raise ConnectionNotFound("connection URL in the environment is not a valid URL") from exc


def airflow_connection(conn_id: str) -> Any:
    """The connection as Airflow holds it (secrets backend or metadata database)."""
    try:
        from airflow.sdk import BaseHook
    except ImportError as exc:
        raise ConnectionNotFound(
            f"connection '{conn_id}' not found: set {env_var(conn_id)} or define it in Airflow"
        ) from exc
    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - Airflow raises several kinds here
        raise ConnectionNotFound(
            f"connection '{conn_id}' not found: set {env_var(conn_id)} or define it in Airflow"
        ) from exc


def _from_airflow(conn_id: str) -> URL:
    conn = airflow_connection(conn_id)
    if conn.conn_type == "sqlite":
        return URL.create("sqlite", database=conn.host)
    extras = {k: str(v) for k, v in (conn.extra_dejson or {}).items() if isinstance(v, str | int | bool)}
    return URL.create(
        conn.conn_type or "",
        username=conn.login,
        password=conn.password,
        host=conn.host,
        port=conn.port,
        database=conn.schema,
        query=extras,  # driver options such as sslmode travel with the connection
    )


def _with_driver(url: URL) -> URL:
    backend = url.get_backend_name()
    if "+" in url.drivername or backend not in _DRIVERS:
        return url
    return url.set(drivername=_DRIVERS[backend])


def safe(url: URL) -> str:
    """The URL as text with any password hidden: the only form that may reach a log."""
    return url.render_as_string(hide_password=True)
