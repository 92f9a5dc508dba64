"""Check a deployment's settings before anything starts, and name the one that is wrong.

A wrong database or broker URL otherwise shows up as a stack trace repeated by every
restarting service. The compose file's init service runs ``truesync preflight`` first, so
the other services never start on settings that cannot work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kombu import Connection
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from truesync.store.core import STORE_CONN_ID
from truesync.support.connections import env_var

DATABASE_SETTINGS = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", env_var(STORE_CONN_ID))
BROKER_SETTING = "AIRFLOW__CELERY__BROKER_URL"


@dataclass(frozen=True)
class Finding:
    setting: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.setting}: {self.detail}"


def check_database(setting: str, raw: str) -> Finding:
    try:
        url = make_url(raw)
    except ArgumentError:
        return Finding(setting, False, "not a database URL")
    shown = url.render_as_string(hide_password=True)
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5} if url.get_backend_name() != "sqlite" else {})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except (SQLAlchemyError, ImportError) as exc:
        reason = getattr(exc, "orig", None) or exc
        return Finding(setting, False, f"cannot connect to {shown}: {str(reason).strip().splitlines()[0]}")
    return Finding(setting, True, f"connected to {shown}")


def check_broker(setting: str, raw: str) -> Finding:
    shown = maybe_sanitize_url(raw)
    try:
        with Connection(raw, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors
        return Finding(setting, False, f"cannot connect to {shown}: {str(exc).strip().splitlines()[0]}")
    return Finding(setting, True, f"connected to {shown}")


def preflight(environ: dict[str, str] | None = None) -> list[Finding]:
    """Check every configured database and broker setting; unset ones are not checked."""
    env = os.environ if environ is None else environ
    findings = [check_database(name, env[name]) for name in DATABASE_SETTINGS if env.get(name)]
    if env.get(BROKER_SETTING):
        findings.append(check_broker(BROKER_SETTING, env[BROKER_SETTING]))
    return findings
