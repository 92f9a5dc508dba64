"""Turn an Airflow connection id into a SQLAlchemy URL, without needing a running Airflow.

Airflow itself reads connections from ``AIRFLOW_CONN_<ID>`` environment variables, its
secrets backends and its metadata database. The engine first honours the environment
variable (so the engine, the CLI and the tests work without Airflow), then asks Airflow.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

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


def _airflow_connection(conn_id: str) -> Any:
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
    conn = _airflow_connection(conn_id)
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


@dataclass(frozen=True)
class HttpConnection:
    """Base URL and credentials of an HTTP API. ``repr`` hides the secrets."""

    base_url: str
    login: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def http_connection(conn_id: str) -> HttpConnection:
    """An API's base URL and credentials from ``AIRFLOW_CONN_<ID>`` or an Airflow connection.

    The environment holds Airflow's JSON form (``{"conn_type": "http", "host": ...}``) or a
    URI, ``https://login:secret@host:port/base/path`` (login empty for a bare token). Either
    way the fields are read as Airflow's HttpHook reads them: a host with ``://`` keeps its
    own scheme, otherwise ``schema`` is the scheme when it is http or https, otherwise the
    connection type decides; so a token configured for https never travels over http.
    """
    raw = (os.environ.get(env_var(conn_id)) or "").strip()
    if raw.startswith("{"):
        try:
            fields = json.loads(raw)
        except ValueError:
            raise ConnectionNotFound(f"connection '{conn_id}' in the environment is not valid JSON") from None
        return _http_from_fields(conn_id, _FieldsView(fields))
    if raw:
        return _http_from_uri(conn_id, raw)
    return _http_from_fields(conn_id, _airflow_connection(conn_id))


class _FieldsView:
    """Airflow's JSON connection form seen with the attributes of an Airflow ``Connection``."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.conn_type = fields.get("conn_type")
        self.host, self.port, self.schema = fields.get("host"), fields.get("port"), fields.get("schema")
        self.login, self.password = fields.get("login"), fields.get("password")
        extra = fields.get("extra") or {}
        self.extra_dejson = json.loads(extra) if isinstance(extra, str) else extra


def _http_from_uri(conn_id: str, raw: str) -> HttpConnection:
    parts = urlsplit(raw)
    host = unquote(parts.hostname or "")
    if parts.scheme not in ("http", "https") or not host:
        raise ConnectionNotFound(f"connection '{conn_id}' in the environment is not an http(s) URL")
    if "://" in host:  # Airflow's URI form of a host that names its own scheme: http://https%3A%2F%2Fapi.x
        return _http_from_fields(conn_id, _FieldsView({"conn_type": parts.scheme, "host": host, "port": parts.port,
            "login": unquote(parts.username or ""), "password": unquote(parts.password or ""),
            "schema": parts.path.strip("/")}))  # fmt: skip
    netloc = host + (f":{parts.port}" if parts.port else "")
    return HttpConnection(
        f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}",
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


def _http_from_fields(conn_id: str, conn: Any) -> HttpConnection:
    """Base URL from Airflow connection fields; the base path comes from the host, ``schema`` or extra ``base_path``."""
    host = str(conn.host or "").strip().rstrip("/")
    schema = str(conn.schema or "").strip().strip("/")
    if "://" in host:
        scheme, host = host.split("://", 1)
    elif schema.lower() in ("http", "https"):
        scheme = schema.lower()
    else:
        scheme = "https" if conn.conn_type == "https" else "http"
    if scheme not in ("http", "https") or not host:
        raise ConnectionNotFound(f"connection '{conn_id}' has no http(s) host")
    host, _, host_path = host.partition("/")
    extra = conn.extra_dejson or {}
    path = (
        host_path
        or str(extra.get("base_path") or "").strip("/")
        or (schema if schema.lower() not in ("http", "https") else "")
    )
    port = f":{conn.port}" if conn.port else ""
    base = f"{scheme}://{host}{port}" + (f"/{path.strip('/')}" if path.strip("/") else "")
    return HttpConnection(base, conn.login or None, conn.password or None)
