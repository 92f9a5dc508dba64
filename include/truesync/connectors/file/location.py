"""Where a file system's files are: a base URL and the Airflow connection that opens it.

The environment variable ``AIRFLOW_CONN_<ID>`` may hold the base URL itself
(``file:///srv/pos-drop``): the files are then reached with no Airflow connection, as a
local folder needs none, and a bucket with its filesystem's own default credentials.
Otherwise the connection (from the environment as Airflow's JSON form, or from Airflow) is
one of a storage provider's types (``aws``, ``google_cloud_platform``, ``sftp``); its extra
``url`` holds the base URL, and the same connection opens it through ``ObjectStoragePath``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from truesync.support.connections import ConnectionNotFound, airflow_connection, env_var


@dataclass(frozen=True)
class Location:
    """A base URL, and the connection id that opens it (None: no connection needed)."""

    url: str
    conn_id: str | None

    def shown(self) -> str:
        """The URL without any user or password, for messages."""
        parts = urlsplit(self.url)
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def file_location(conn_id: str) -> Location:
    """The base URL of the files behind ``conn_id``, and whether the connection itself opens them."""
    raw = (os.environ.get(env_var(conn_id)) or "").strip()
    if raw and not raw.startswith("{"):
        return Location(_url(conn_id, raw), None)
    if raw:
        try:
            extra = json.loads(raw).get("extra") or {}
        except (ValueError, AttributeError):
            raise ConnectionNotFound(f"connection '{conn_id}' in the environment is not valid JSON") from None
        extra = json.loads(extra) if isinstance(extra, str) else extra
    else:
        extra = airflow_connection(conn_id).extra_dejson or {}
    if not extra.get("url"):
        raise ConnectionNotFound(f"connection '{conn_id}' has no extra 'url' naming where the files are")
    return Location(_url(conn_id, str(extra["url"])), conn_id)


def _url(conn_id: str, raw: str) -> str:
    if "://" not in raw:
        raise ConnectionNotFound(f"connection '{conn_id}': a file location is a URL such as file:///srv/drop")
    return raw.rstrip("/")
