"""The sandbox of one test, run in-process: configuration, store, engines on the four systems.

Shared by the engine and data-quality tests; ``labels.csv`` is the ground truth. ``DemoDays``
is the sandbox after the demo days ran once, shared by the tests of a module that only read it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import MetaData, Table, func, select
from sqlalchemy.engine import URL, Engine

from truesync import cli
from truesync.config import Config, load_config
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.sandbox import systems as sandbox
from truesync.store import Store, queue, runs, staging
from truesync.support.sqldb import open_engine

FLOWS = ("webshop_to_crm", "erp_to_stockctl")
SHOP_FLOW, ERP_FLOW = FLOWS
DEMO_START = datetime.combine(sandbox.DEMO_START, datetime.min.time())
SHOP_TIERS = {code: tier for tier, code in sandbox.TIERS_SHOP.items()}
SHOP_STATUS = {code: status for status, code in sandbox.STATUS_SHOP.items()}


@dataclass
class Demo:
    """The sandbox of one test: configuration, store, and engines on the four systems."""

    config: Config
    store: Store
    state: Path
    urls: dict[str, URL]
    engines: dict[str, Engine] = field(default_factory=dict)

    def engine(self, system: str) -> Engine:
        if system not in self.engines:
            self.engines[system] = open_engine(self.urls[system])
        return self.engines[system]

    def table(self, system: str, name: str) -> Table:
        return Table(name, MetaData(), autoload_with=self.engine(system))

    def rows(self, system: str, name: str) -> list[dict[str, Any]]:
        table = self.table(system, name)
        with self.engine(system).connect() as conn:
            return [dict(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns)).mappings()]

    def by_key(self, system: str, name: str, key: str) -> dict[str, dict[str, Any]]:
        return {r[key]: r for r in self.rows(system, name)}

    def snapshot(self, system: str) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table of a system, in primary-key order."""
        metadata = MetaData()
        metadata.reflect(self.engine(system))
        return {name: self.rows(system, name) for name in sorted(metadata.tables)}

    def window(self, flow: str, day: int) -> Window:
        """Demo day ``day`` as a daily run's window, widened by the flow's lookback."""
        start = DEMO_START + timedelta(days=day)
        return Window(start - self.config.flows[flow].lookback, start + timedelta(days=1))

    def run(self, flow: str, day: int, dry_run: bool = False, tag: str = "") -> dict[str, Any]:
        run_id = f"{flow}:{tag}day{day}"
        return run_flow(self.config, self.store, flow, run_id, self.window(flow, day), dry_run)

    def run_demo_days(self, tag: str = "") -> list[dict[str, Any]]:
        return [self.run(flow, day, tag=tag) for flow in FLOWS for day in range(sandbox.DEMO_DAYS)]

    def labels(self) -> pd.DataFrame:
        return pd.read_csv(self.state / "sandbox" / "labels.csv", dtype=str, keep_default_na=False)

    def exceptions(self, flow: str | None = None, entity: str | None = None) -> list[dict[str, Any]]:
        return queue.list_exceptions(self.store, flow=flow, entity=entity)

    def exception(self, flow: str, entity: str, key: str) -> dict[str, Any]:
        found = [e for e in self.exceptions(flow, entity) if e["key"] == key]
        assert len(found) == 1, found
        return found[0]

    def active_keys(self, flow: str, entity: str) -> set[str]:
        return {e["key"] for e in self.exceptions(flow, entity) if e["status"] in queue.ACTIVE}

    def count(self, table: Table) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)

    def fingerprint(self) -> dict[str, Any]:
        """Every row of the four systems and the queue, the size of every store table, the other files' contents."""
        metadata = MetaData()
        metadata.reflect(self.store.engine)
        files = sorted(p for p in self.state.rglob("*") if p.is_file() and ".db" not in p.name)
        return {
            "systems": {system: self.snapshot(system) for system in sorted(self.urls)},
            "store": {name: self.count(table) for name, table in sorted(metadata.tables.items())},
            "queue": self.exceptions(),
            "files": {str(p.relative_to(self.state)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
        }

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()
        self.store.engine.dispose()


@dataclass
class DemoDays:
    """The sandbox after both flows ran over the demo days, built once per module: tests read it, never change it."""

    demo: Demo
    reports: list[dict[str, Any]]
    before: dict[str, dict[str, list[dict[str, Any]]]]  # every table of the target systems before the first run

    @classmethod
    def run(cls, demo: Demo) -> DemoDays:
        before = {system: demo.snapshot(system) for system in sorted({demo.config.flows[f].target for f in FLOWS})}
        return cls(demo, demo.run_demo_days(), before)

    def before_by_key(self, system: str, name: str, key: str) -> dict[str, dict[str, Any]]:
        """``Demo.by_key`` as the table was before the first run."""
        return {r[key]: r for r in self.before[system][name]}


def open_demo(state: Path) -> Demo:
    """``truesync sandbox init --scale 200`` into ``state``, with handles on its systems."""
    assert cli.main(["sandbox", "init", "--scale", "200"]) == 0
    config = load_config()
    return Demo(config, Store(), state, sandbox.system_urls(config))


def assert_conserved(demo: Demo, report: dict[str, Any]) -> None:
    """extracted = created + updated + unchanged + quarantined, in the report, the store and per record."""
    run_id = report["run_id"]
    assert report["status"] == "success", report
    stored = runs.entity_counts(demo.store, run_id)
    results = staging.run_results(demo.store, run_id)
    assert set(report["entities"]) == set(demo.config.flows[report["flow"]].entities)
    for entity, body in report["entities"].items():
        outcomes = body["outcomes"]
        assert body["extracted"] == sum(outcomes.values()), (run_id, entity, body)
        assert body["conserved"] is True
        assert sum(body["classes"].values()) == body["extracted"], (run_id, entity, body)
        assert stored[entity]["extracted"] == body["extracted"]
        for outcome, n in outcomes.items():
            assert stored[entity][outcome] == n, (run_id, entity, outcome)
        mine = results[results["entity"] == entity]
        assert len(mine) == body["extracted"] and mine["key"].is_unique
        assert Counter(mine["outcome"]) == Counter({o: n for o, n in outcomes.items() if n}), (run_id, entity)
        assert Counter(mine["class"]) == Counter({c: n for c, n in body["classes"].items() if n}), (run_id, entity)
