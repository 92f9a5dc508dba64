"""Quiet drift: the differences no change time shows, which only a full compare finds.

``truesync sandbox init`` plans them and labels them in ``compare_labels.csv`` (columns
``flow, entity, key, class, quiet, outcome``: what the first compare after the drift must
report per record); ``truesync sandbox drift`` applies the plan (``drift.json``) once the
flows have run over the demo days. Five kinds, for every entity of each flow between two
SQL systems of the sandbox, ``QUIET_SHARE`` of the entity's records each (at least one),
chosen from the seed:

* ``overwritten``: a target edit of a field the source owns, its change time left as it was;
* ``deleted``: a source delete (outcome: the flow's ``compare.deletes`` policy), within the
  flow's ``compare.max_delete_share`` of the target's rows (at least one, which a tiny
  sandbox's guard refuses under a policy that deletes);
* ``target_only``: a record created in the target only (``reported``, never touched);
* ``delayed``: a source edit of a field it owns, its change time left as it was;
* ``missing``: a source record inserted with a change time on a demo day, so before the
  watermark the demo days leave (no target row).

The first, second and fourth change a record a demo day synced (a ledger entry exists),
picked among the labelled records those runs leave in sync (no check in ``labels.csv``);
a deleted parent has no children in either system, so it is never held for them. New
records (``target_only``, ``missing``) copy an untouched history record under a new key,
so an order's customer is in the target and in sync.

Nothing of this exists before ``drift`` runs: ``labels.csv`` and every incremental run
over the demo days are as without it, and applying it needs a watermark to back-date to.
Records ``init`` itself leaves only in the target (the target row of a source row without
key) are labelled ``target_only`` too. The REST twin of the shop flow is not labelled: the
drift edits the SQL CRM only.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Date, DateTime, Table, func, select
from sqlalchemy.engine import URL, Connection

from truesync.config import Config
from truesync.sandbox.systems import Rows, tables
from truesync.store import Store, ledger, runs
from truesync.support.sqldb import open_engine

QUIET_SHARE = 0.01
SEED_OFFSET = 2  # the payment gateway draws from seed + 1
OVERWRITTEN, DELETED, TARGET_ONLY, DELAYED, MISSING = "overwritten", "deleted", "target_only", "delayed", "missing"
SYNCED_KINDS = (OVERWRITTEN, DELETED, DELAYED)  # need a ledger entry: applied to records the demo days synced
LABEL_COLUMNS = ("flow", "entity", "key", "class", "quiet", "outcome")
DELETE_OUTCOMES = {"report": "reported", "soft": "soft_deleted", "delete": "removed"}
IN_SYNC_AFTER_DEMO = ("in_sync", "missing", "delayed", "overwritten")  # classes the demo days leave in sync


def _plus_one(value: Any) -> str:
    return f"{Decimal(str(value)) + 1:.2f}"


def _noted(value: Any) -> str:
    return f"{value} (quiet)"


# Entity -> (canonical field, new value from the synced one): the owned field both quiet edits change.
EDITS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "customer": ("name", _noted),
    "order": ("total", _plus_one),
    "stock_item": ("name", _noted),
}


@dataclass
class Change:
    """One row to insert, update (only ``values``' columns: the change time stays) or delete."""

    flow: str
    entity: str
    key: str
    kind: str
    system: str
    table: str
    key_column: str
    op: str  # insert | update | delete
    values: dict[str, Any]


@dataclass
class Plan:
    """What ``drift`` applies, and what the first compare after it must report."""

    changes: list[Change]
    labels: list[dict[str, Any]]


class DriftError(ValueError):
    """The sandbox is not in the state the drift was planned for (not synced yet, drifted already)."""


COMPARE_FLOWS = ("webshop_to_crm", "erp_to_stockctl")  # the SQL flows a compare is shown on


def compare_flows(config: Config) -> list[str]:
    """The sandbox flows whose quiet drift is planned, those the configuration has."""
    return [name for name in COMPARE_FLOWS if name in config.flows]


def plan(config: Config, rows: Rows, seed: int, start: date, days: int) -> Plan:
    """Choose the drift of every entity of the compare flows, deterministically from the seed."""
    rng = np.random.default_rng(seed + SEED_OFFSET)
    first = datetime.combine(start, datetime.min.time())
    out = Plan([], [])
    for flow in compare_flows(config):
        for entity in config.load_order(config.flows[flow].entities):
            _Entity(config, rows, flow, entity, out).plan(rng, first, days)
    out.labels.sort(key=lambda label: (label["flow"], label["entity"], label["class"], label["key"]))
    return out


class _Entity:
    """The rows ``init`` generated for one flow entity, on both sides, and the drift planned on them."""

    def __init__(self, config: Config, rows: Rows, flow: str, entity: str, out: Plan) -> None:
        self.config, self.rows, self.flow, self.entity, self.out = config, rows, flow, entity, out
        spec = config.flows[flow]
        self.sides = {spec.source: config.entity_mapping(spec.source, entity),
                      spec.target: config.entity_mapping(spec.target, entity)}  # fmt: skip
        self.source, self.target = spec.source, spec.target
        self.by_key = {side: self._by_key(side) for side in self.sides}

    def _by_key(self, system: str) -> dict[str, dict[str, Any]]:
        mapping = self.sides[system]
        found = self.rows.tables.get((system, mapping.table), [])
        return {row[mapping.key]: row for row in found if row[mapping.key] is not None}

    def plan(self, rng: np.random.Generator, first: datetime, days: int) -> None:
        source, target = self.by_key[self.source], self.by_key[self.target]
        for key in sorted(set(target) - set(source)):  # init's own: the target row of a source row without key
            self._label(key, TARGET_ONLY)
        n = max(1, round(len(source) * QUIET_SHARE))
        labelled = [lab for lab in self.rows.labels if lab["flow"] == self.flow and lab["entity"] == self.entity]
        synced = [lab["key"] for lab in labelled if lab["class"] in IN_SYNC_AFTER_DEMO and not lab["check"]]
        synced = [synced[i] for i in rng.permutation(len(synced))]
        parents, limit = self._referenced(), self.config.flows[self.flow].compare.max_delete_share
        deleted = [k for k in synced if k not in parents][: max(1, min(n, int(limit * len(target))))]
        gone = set(deleted)
        rest = [k for k in synced if k not in gone]
        self._edit(rest[:n], OVERWRITTEN, self.target)
        self._edit(rest[n : 2 * n], DELAYED, self.source)
        for key in deleted:
            self._change(key, DELETED, self.source, "delete", {})
        history = sorted(set(source) & set(target) - {lab["key"] for lab in labelled})
        templates = [history[i] for i in rng.choice(len(history), size=2 * n, replace=False)]
        new_keys = _next_keys(set(source) | set(target), 2 * n)
        for i, (key, template) in enumerate(zip(new_keys, templates, strict=True)):
            when = first + timedelta(days=int(rng.integers(days)), seconds=int(rng.integers(86400)))
            self._insert(key, template, TARGET_ONLY if i < n else MISSING, when)

    def _referenced(self) -> set[str]:
        """Keys of this entity that a child entity of the flow references, in the source or the target."""
        found: set[str] = set()
        for child in self.config.flows[self.flow].entities:
            for field, parent in self.config.entities[child].references.items():
                if parent != self.entity:
                    continue
                for system in self.sides:
                    mapping = self.config.entity_mapping(system, child)
                    column = mapping.fields[field]
                    found |= {row[column] for row in self.rows.tables.get((system, mapping.table), [])}
        return found

    def _edit(self, keys: list[str], kind: str, system: str) -> None:
        field, new = EDITS[self.entity]
        source_column = self.sides[self.source].fields[field]
        for key in keys:
            value = new(self.by_key[self.source][key][source_column])  # what the sync left on both sides
            self._change(key, kind, system, "update", {self.sides[system].fields[field]: value})

    def _insert(self, key: str, template: str, kind: str, when: datetime) -> None:
        system = self.target if kind == TARGET_ONLY else self.source
        mapping = self.sides[system]
        row = {**self.by_key[system][template], mapping.key: key}
        if mapping.cursor:
            row[mapping.cursor] = when
        self._change(key, kind, system, "insert", row)

    def _change(self, key: str, kind: str, system: str, op: str, values: dict[str, Any]) -> None:
        mapping = self.sides[system]
        self.out.changes.append(
            Change(self.flow, self.entity, key, kind, system, mapping.table, mapping.key, op, values)
        )
        self._label(key, kind)

    def _label(self, key: str, kind: str) -> None:
        outcome = {OVERWRITTEN: "updated", DELAYED: "updated", MISSING: "created", TARGET_ONLY: "reported"}.get(kind)
        if kind == DELETED:
            outcome = DELETE_OUTCOMES[self.config.flows[self.flow].compare.deletes_of(self.entity).policy]
        row = {"flow": self.flow, "entity": self.entity, "key": key, "class": kind, "quiet": True, "outcome": outcome}
        self.out.labels.append(row)


def _next_keys(taken: set[str], n: int) -> list[str]:
    """``n`` keys after the highest of ``taken``, numbered the same way (``C0000199`` -> ``C0000200``, ...)."""
    prefix, digits = re.fullmatch(r"(.*?)(\d+)", max(taken)).groups()
    return [f"{prefix}{int(digits) + i:0{len(digits)}d}" for i in range(1, n + 1)]


def write(drift: Plan, directory: Path) -> tuple[Path, Path]:
    """Write ``compare_labels.csv`` and the plan ``drift.json``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    labels, changes = directory / "compare_labels.csv", directory / "drift.json"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(drift.labels)
    changes.write_text(json.dumps([asdict(c) for c in drift.changes], default=_iso, indent=1))
    return labels, changes


def _iso(value: Any) -> str:
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to the drift plan")


def read(directory: Path) -> list[Change]:
    path = directory / "drift.json"
    if not path.is_file():
        raise DriftError(f"no drift plan at {path}: run 'truesync sandbox init' first")
    return [Change(**change) for change in json.loads(path.read_text())]


def apply(config: Config, store: Store, urls: dict[str, URL], directory: Path) -> dict[tuple[str, str, str], int]:
    """Apply the plan ``init`` wrote, after checking the sandbox is where it was planned for.

    Every record an edit or a delete changes must have been synced by its flow (a ledger
    entry), every back-dated insert must fall before the flow's watermark, every row to
    change must be there and every row to insert not yet (so a second ``drift`` changes
    nothing and says so). Returns the number of changes per (flow, entity, kind).
    """
    changes = read(directory)
    _check_synced(config, store, changes)
    by_system: dict[str, list[Change]] = {}
    for change in changes:
        by_system.setdefault(change.system, []).append(change)
    engines = {system: open_engine(urls[system]) for system in by_system}
    try:
        for system, mine in by_system.items():
            with engines[system].connect() as conn:
                for change in mine:
                    _check_rows(conn, _table(change), change)
        for system, mine in by_system.items():
            with engines[system].begin() as conn:
                for change in mine:
                    _apply(conn, _table(change), change)
    finally:
        for engine in engines.values():
            engine.dispose()
    counts: dict[tuple[str, str, str], int] = {}
    for change in changes:
        group = (change.flow, change.entity, change.kind)
        counts[group] = counts.get(group, 0) + 1
    return counts


def _table(change: Change) -> Table:
    return tables()[change.system].tables[change.table]


def _check_synced(config: Config, store: Store, changes: list[Change]) -> None:
    """Refuse a drift whose labels would be wrong: records never synced, inserts not before the watermark."""
    for flow, entity in sorted({(c.flow, c.entity) for c in changes}):
        mine = [c for c in changes if (c.flow, c.entity) == (flow, entity)]
        keys = [c.key for c in mine if c.kind in SYNCED_KINDS]
        known = set(ledger.lookup(store, flow, entity, keys).index)
        mark = runs.watermark(store, flow)
        late = [c for c in mine if c.kind == MISSING and (mark is None or _when(config, c) >= mark)]
        unsynced = [k for k in keys if k not in known] + [c.key for c in late]
        if unsynced:
            raise DriftError(
                f"flow '{flow}' has not synced the demo days yet ({entity} {', '.join(unsynced)}): "
                "run the flows over every demo day first, then 'truesync sandbox drift'"
            )


def _when(config: Config, change: Change) -> datetime:
    """The change time of a planned insert."""
    cursor = config.entity_mapping(change.system, change.entity).cursor
    return datetime.fromisoformat(change.values[str(cursor)])


def _check_rows(conn: Connection, table: Table, change: Change) -> None:
    """The row to update or delete is there, once; the row to insert is not yet."""
    key = table.c[change.key_column]
    there = conn.execute(select(func.count()).select_from(table).where(key == change.key)).scalar()
    if there != (0 if change.op == "insert" else 1):
        state = "already there" if change.op == "insert" else f"in {there} rows, not 1"
        raise DriftError(
            f"{change.entity} '{change.key}' is {state} in {change.system}.{change.table}: the drift was applied "
            "already or the sandbox changed; run 'truesync sandbox init' for a fresh one"
        )


def _apply(conn: Connection, table: Table, change: Change) -> None:
    key = table.c[change.key_column]
    values = {name: _typed(table, name, value) for name, value in change.values.items()}
    if change.op == "insert":
        conn.execute(table.insert().values(**values))
    elif change.op == "update":
        conn.execute(table.update().where(key == change.key).values(**values))
    else:
        conn.execute(table.delete().where(key == change.key))


def _typed(table: Table, column: str, value: Any) -> Any:
    """A value of the JSON plan as its column takes it (times and dates were written as ISO text)."""
    kind = table.c[column].type
    if value is not None and isinstance(kind, DateTime):
        return datetime.fromisoformat(value)
    if value is not None and isinstance(kind, Date):
        return date.fromisoformat(value)
    return value
