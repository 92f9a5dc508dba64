"""Seed data of the sandbox REST services, and their ground truth.

The REST CRM holds the same contacts and deals as the SQL CRM of the sandbox, so the
flow ``webshop_to_crm_api`` meets exactly the drift the SQL flow meets, and its labels are
the SQL flow's labels under its own name. Seeds are JSON files beside the SQLite systems,
read by ``truesync sandbox serve``.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from truesync.sandbox import Rows
from truesync.sandboxapi import ServerThread, crm_app, payments_app, seed

SQL_TWIN = {"webshop_to_crm_api": "webshop_to_crm"}
CRM_API, PAYMENTS = "crm_api", "payments"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value if value is None or isinstance(value, str | int | bool) else str(value)


def _as_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _json_value(v) for k, v in row.items()} for row in rows]


def crm_seed(rows: Rows) -> dict[str, list[dict[str, Any]]]:
    """The REST CRM's collections: the SQL CRM's contacts and deals as JSON records."""
    return {
        "contacts": _as_json(rows.tables.get(("crm", "contacts"), [])),
        "deals": _as_json(rows.tables.get(("crm", "deals"), [])),
    }


def add_labels(rows: Rows) -> None:
    """Label the REST flows: each one is its SQL twin's ground truth under its own name."""
    for flow, twin in SQL_TWIN.items():
        rows.labels += [{**label, "flow": flow} for label in rows.labels if label["flow"] == twin]


def seed_path(directory: Path, system: str) -> Path:
    return directory / f"{system}.json"


def write_seeds(rows: Rows, directory: Path) -> dict[str, int]:
    """Write each REST service's seed file; returns records per service.collection."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = {CRM_API: crm_seed(rows)}
    counts: dict[str, int] = {}
    for system, data in seeds.items():
        seed_path(directory, system).write_text(json.dumps(data))
        counts.update({f"{system}.{name}": len(items) for name, items in data.items()})
    return counts


def read_seed(directory: Path, system: str) -> dict[str, list[dict[str, Any]]]:
    path = seed_path(directory, system)
    if not path.is_file():
        raise LookupError(f"no seed for '{system}' at {path}: run 'truesync sandbox init' first")
    return json.loads(path.read_text())


def serve(directory: Path, host: str, crm_port: int, payments_port: int, token: str) -> dict[str, ServerThread]:
    """Start both sandbox services, seeded from ``directory``, each in a background thread."""
    apps = {CRM_API: (crm_app(token), crm_port), PAYMENTS: (payments_app(token), payments_port)}
    servers: dict[str, ServerThread] = {}
    for system, (app, port) in apps.items():
        seed(app, read_seed(directory, system))
        servers[system] = ServerThread(app, host, port).start()
    return servers
