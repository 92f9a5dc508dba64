"""An HTTP API's base URL and credentials, from ``AIRFLOW_CONN_<ID>`` or an Airflow connection.

The fields are read as Airflow's HttpHook reads them, so a connection defined for Airflow
works unchanged: a host with ``://`` keeps its own scheme, otherwise ``schema`` is the
scheme when it is http or https, otherwise the connection type decides; so a token
configured for https never travels over http. The secrets never appear in a ``repr``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from truesync.support.connections import ConnectionNotFound, airflow_connection, env_var


@dataclass(frozen=True)
class HttpConnection:
    """Base URL and credentials of an HTTP API. ``repr`` hides the secrets."""

    base_url: str
    login: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def http_connection(conn_id: str) -> HttpConnection:
    """An API's base URL and credentials from ``AIRFLOW_CONN_<ID>`` or an Airflow connection.

    The environment holds Airflow's JSON form (``{"conn_type": "http", "host": ...}``) or a
    URI, ``https://login:secret@host:port/base/path`` (login empty for a bare token).
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
    return _http_from_fields(conn_id, airflow_connection(conn_id))


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
