"""A POS drop for the tests: terminal exports in a folder (kind ``file``) flowing into a SQLite back office.

The terminals' compact codes become plain states through the code table ``pos_states``
(``codes/pos_states.yaml`` in the test's configuration directory).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Column, DateTime, MetaData, Numeric, String, Table, create_engine, select

from truesync.config import load_config
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.store import Store, queue
from truesync.store.schema import files as file_table

DAY = datetime(2026, 11, 2)
HEADER = "event_id,terminal_id,code,amount,event_time\n"
FLOW = "pos_to_backoffice"


STATES = {"A00": "payment_completed", "E07": "payment_failed", "S13": "signature_failed", "D00": "device_offline",
          "D01": "device_online"}  # fmt: skip


def _config(directory: Path, fmt: str = "csv", settle: str = "0s") -> Path:
    glob = "*/*.csv" if fmt == "csv" else "*/*.jsonl"
    sections = {
        "systems": {
            "pos": {"kind": "file", "connection": "test_pos", "file": {
                "datasets": {"events": {"glob": glob, "format": fmt}}, "settle": settle}},
            "backoffice": {"kind": "sql", "connection": "test_backoffice"},
        },
        "entities": {"pos_event": {"key": "event_id", "fields": {
            "event_id": {"required": True}, "terminal": {"required": True}, "state": {},
            "amount": {"type": "decimal", "scale": 2, "min": 0}, "event_time": {"type": "datetime"}}}},
        "mappings": {
            "pos": {"version": 1, "entities": {"pos_event": {
                "table": "events", "key": "event_id", "cursor": "event_time",
                "fields": {"event_id": "event_id", "terminal": "terminal_id", "state": "code", "amount": "amount",
                           "event_time": "event_time"}, "code_tables": {"state": "pos_states"}}}},
            "backoffice": {"version": 1, "entities": {"pos_event": {
                "table": "pos_event", "key": "event_id", "cursor": "modified_at",
                "fields": {"event_id": "event_id", "terminal": "terminal", "state": "state", "amount": "amount",
                           "event_time": "event_time"}}}},
        },
        "flows": {FLOW: {"source": "pos", "target": "backoffice", "entities": ["pos_event"], "chunk_size": 3,
                         "quality": {"max_blocked_share": 1.0, "silence": {"pos_event": {
                             "by": "terminal", "field": "state", "values": ["device_offline"], "after": "6h"}}}}},
    }  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in sections.items():
        (directory / f"{name}.yaml").write_text(yaml.safe_dump({name: body}))
    write_codes(directory, 1, STATES)
    return directory


def write_codes(directory: Path, version: int, codes: dict[str, Any]) -> None:
    """The code table ``pos_states``: terminal codes to the back office's plain states."""
    (directory / "codes").mkdir(exist_ok=True)
    (directory / "codes" / "pos_states.yaml").write_text(yaml.safe_dump({"version": version, "codes": codes}))


class Drop:
    """A POS drop and a back office: write files, run windows, read what arrived."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, url: str | None = None, **config: Any) -> None:
        self.folder = tmp / "drop"
        self.folder.mkdir(parents=True)
        self.directory = _config(tmp / "config", **config)
        self.config = load_config(self.directory)
        self.backoffice = f"sqlite:///{tmp / 'backoffice.db'}"
        monkeypatch.setenv("AIRFLOW_CONN_TEST_POS", url or self.folder.as_uri())
        monkeypatch.setenv("AIRFLOW_CONN_TEST_BACKOFFICE", self.backoffice)
        monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(self.directory))
        self.table = Table(
            "pos_event", MetaData(), Column("event_id", String(40), primary_key=True), Column("terminal", String(20)),
            Column("state", String(30)), Column("amount", Numeric(12, 2)), Column("event_time", DateTime),
            Column("modified_at", DateTime),
        )  # fmt: skip
        engine = create_engine(self.backoffice)
        self.table.metadata.create_all(engine)
        engine.dispose()
        self.store = Store()  # the state directory's, as Airflow's tasks open it
        self.runs = 0

    def codes(self, version: int, codes: dict[str, Any]) -> None:
        """A new version of the code table, as a person would commit it."""
        write_codes(self.directory, version, codes)
        self.config = load_config(self.directory)

    def write(self, name: str, body: str) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        return path

    def run(self, day: int, days: int = 1) -> dict[str, Any]:
        start = DAY + timedelta(days=day)
        return run_flow(self.config, self.store, FLOW, self.run_id(), Window(start, start + timedelta(days=days)))

    def run_id(self) -> str:
        self.runs += 1
        return f"run{self.runs}"

    def rows(self) -> dict[str, dict[str, Any]]:
        engine = create_engine(self.backoffice)
        with engine.connect() as conn:
            found = {r.event_id: dict(r._mapping) for r in conn.execute(select(self.table))}
        engine.dispose()
        return found

    def exceptions(self) -> list[dict[str, Any]]:
        return [e for e in queue.list_exceptions(self.store, flow=FLOW) if e["status"] in queue.ACTIVE]

    def marks(self) -> dict[str, Any]:
        with self.store.engine.connect() as conn:
            return {r.path: r for r in conn.execute(select(file_table).where(file_table.c.committed.is_(True)))}


def counts(report: dict[str, Any]) -> dict[str, int]:
    """The entity's numbers from a run report, flat: extracted, the outcomes, exceptions opened and resolved."""
    body = report["entities"]["pos_event"]
    opened, resolved = body["exceptions"]["opened"], body["exceptions"]["resolved"]
    return {"extracted": body["extracted"], **body["outcomes"], "exceptions_opened": opened,
            "exceptions_resolved": resolved}  # fmt: skip


def events(*rows: tuple[str, str, str, str, str]) -> str:
    return HEADER + "".join(",".join(r) + "\n" for r in rows)


def at(day: int, hour: int) -> str:
    return (DAY + timedelta(days=day, hours=hour)).isoformat()
