"""What a task works on: a run of a flow, one entity of it, and the state of one chunk being synced.

``EntityJob`` names the flow, entity and run: the ids XCom carries between tasks. Every
stage takes one. ``ChunkSync`` is what each step of syncing one chunk shares: the target,
the records held so far and the counts, so the steps pass one object, not seven.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from truesync.config import CodeTable, Config, EntityConfig, EntityMapping
from truesync.connectors.base import Source, Target
from truesync.connectors.registry import open_source, open_target
from truesync.pipeline import progress
from truesync.pipeline.window import Window
from truesync.store import Store, runs
from truesync.store.rate_limits import shared_ceilings


@dataclass(frozen=True)
class EntityJob:
    """Which flow, entity and run a task works on: the ids XCom carries."""

    config: Config
    store: Store
    flow: str
    entity: str
    run_id: str

    @property
    def spec(self) -> EntityConfig:
        return self.config.entities[self.entity]

    def source(self) -> Source:
        """The flow's source, its request-rate ceiling shared through the store by every worker."""
        return open_source(self.config, self.config.flows[self.flow].source, shared_ceilings(self.store))

    def target(self) -> Target:
        """The flow's target, its request-rate ceiling shared through the store by every worker."""
        return open_target(self.config, self.config.flows[self.flow].target, shared_ceilings(self.store))

    def mapping(self, role: str) -> EntityMapping:
        """The entity's mapping in the flow's ``source`` or ``target`` system."""
        return self.config.entity_mapping(getattr(self.config.flows[self.flow], role), self.entity)

    def code_tables(self) -> list[CodeTable]:
        """The code tables the flow translates this entity through, on either side."""
        return self.config.code_tables_of(self.flow, self.entity)

    def code_versions(self) -> str | None:
        """``name@version`` of every code table the flow translates this entity through, or None."""
        return ",".join(table.label for table in self.code_tables()) or None

    def payload_fields(self) -> list[str]:
        """Key, the fields the flow syncs, and references (needed for the parent check)."""
        synced = self.config.synced_fields(self.flow, self.entity)
        refs = [f for f in self.spec.references if f in self.mapping("source").fields]
        return list(dict.fromkeys([*self.spec.key_fields, *synced, *refs]))

    def mapping_version(self) -> str:
        """Both sides' mapping versions: a ledger entry made under other mappings is not trusted."""
        flow = self.config.flows[self.flow]
        source, target = self.config.mappings[flow.source].version, self.config.mappings[flow.target].version
        return f"{flow.source}@{source}->{flow.target}@{target}"


REPROCESS = "reprocess"  # the kind of a run translating records again (``pipeline.reprocess``)


def begin_run(store: Store, flow: str, run_id: str, window: Window, dry_run: bool, kind: str = "sync") -> None:
    """Record the run, its window and kind in the store; every later task of the run finds it there."""
    progress.run_started(flow, run_id, window, dry_run, kind)
    runs.begin(store, run_id, flow, window.start, window.end, dry_run, kind)


@dataclass
class Tally:
    """Counts of one entity in one run; kept as a Counter so chunks add up."""

    counts: Counter = field(default_factory=Counter)
    load_seconds: float = 0.0

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += int(n)


@dataclass
class Quarantine:
    """Rows of a chunk that will not be loaded, with the check that stopped them."""

    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, key: str, klass: str, check: str, column: str | None, reason: str, payload: str) -> None:
        """Hold a record; the first reason found for a record is the one reported."""
        self.by_key.setdefault(
            key,
            {"key": key, "class": klass, "check_name": check, "field": column, "reason": reason, "payload": payload},
        )

    def __contains__(self, key: object) -> bool:
        return key in self.by_key

    @property
    def keys(self) -> list[str]:
        return list(self.by_key)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.by_key.values())


@dataclass(frozen=True)
class Repair:
    """A target field the books own, set to their value once the record that found it is written
    (``reconcile``)."""

    record: str  # key of the record whose write it follows
    entity: str  # the settled entity in the target
    settled: str  # its key
    field: str
    after: str  # the books' value, canonical


@dataclass
class ChunkSync:
    """One chunk on its way into the target: what every step of classifying and loading it shares.

    ``payload`` maps each good record's key to its staged canonical JSON, which a held
    record carries into the exception queue.
    """

    job: EntityJob
    target: Target
    dry_run: bool
    overdue_before: datetime
    tally: Tally
    held: Quarantine = field(default_factory=Quarantine)
    payload: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))
    audit_all: bool = False  # audit every value a write replaces, not only those of overwritten records
    books: Target | None = None  # the books a reconcile rule checks against as well (read only)
    repairs: dict[str, Repair] = field(default_factory=dict)  # by the settled record's key
    noted: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (check, reason) of a written record

    def hold(self, key: str, klass: str, check: str, column: str | None, reason: str) -> None:
        """Send a good record to the exception queue with the check that stopped it."""
        self.held.add(key, klass, check, column, reason, self.payload[key])
