"""Hostile input: every odd value lands in its documented outcome on every target database.

The table in ``docs/design.md`` ("Hostile input") is what this proves: each value in a field
and in a key is loaded faithfully or held with a clear reason; no run crashes, no report is
corrupted, a rerun writes nothing, and key text never becomes a path or a SQL fragment. The
ERP (SQLite, which can hold all of it) is the source; stock control, the target, is SQLite,
PostgreSQL (with the store there too) or MariaDB.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sandbox_demo import DEMO_START, ERP_FLOW, Demo, assert_conserved
from shared_setup import put_on_server
from sqlalchemy import inspect

from truesync import cli
from truesync.config import load_config
from truesync.core.text import BAD_KEY_PREFIX, escaped
from truesync.pipeline.compare import run_compare
from truesync.sandbox import systems as sandbox
from truesync.store import Store, queue

MEGABYTE = "x" * 1_000_000
DAY0 = DEMO_START + timedelta(hours=3)
# key -> (description, unit price, change time)
ITEMS: dict[str, tuple[str, str, datetime]] = {
    "K'; DROP TABLE stock_items;--": ('Robert\'); DROP TABLE items;-- "dq" \\ %s ? :name', "1.00", DAY0),
    "../../../etc/passwd": ("a key that looks like a path", "2.00", DAY0),
    "K-\u202eRTL\u200f": ("\u202egnp.exe \u200f marks", "3.00", DAY0),
    "K-🦜": ("👩\u200d👩\u200d👧 family 🇩🇪", "4.00", DAY0),
    "K-NUL-FIELD": ("before \x00 after", "5.00", DAY0),
    "K-NUL\x00KEY": ("a NUL in the key", "6.00", DAY0),
    "K-" + "L" * 300: ("a key longer than the store holds", "7.00", DAY0),
    "K-MEGABYTE": (MEGABYTE, "8.00", DAY0),
    "K-PRECISION": ("more digits than NUMERIC(12, 2)", "123456789012345.67", DAY0),
    "K-DECIMALS": ("more decimals than the scale", "1.23456789", DAY0),
    "K-FUTURE": ("changed in the year 9999", "9.00", datetime(9999, 1, 1)),
}
LOADED = {"K'; DROP TABLE stock_items;--", "../../../etc/passwd", "K-\u202eRTL\u200f", "K-🦜", "K-DECIMALS"}


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def demo(request: pytest.FixtureRequest, state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """The sandbox with the hostile items in the ERP; stock control (and for PostgreSQL the store) on the server."""
    put_on_server(request, monkeypatch, "stockctl")
    assert cli.main(["sandbox", "init", "--scale", "40"]) == 0
    config = load_config()
    handle = Demo(config, Store(), state, sandbox.system_urls(config))
    items = handle.table("erp", "items")
    with handle.engine("erp").begin() as conn:
        for key, (description, price, changed) in ITEMS.items():
            conn.execute(items.insert().values(sku=key, description=description, unit_price=price, currency="EUR",
                                               changed_at=changed))  # fmt: skip
    yield handle
    handle.close()


def _target(demo: Demo) -> dict[str, dict[str, Any]]:
    return {key: row for key, row in demo.by_key("stockctl", "stock_items", "sku").items() if key in ITEMS}


def _held(demo: Demo) -> dict[str, dict[str, Any]]:
    return {
        e["key"]: e
        for e in queue.list_exceptions(demo.store, flow=ERP_FLOW)
        if not e["key"].startswith(("SKU-", "null-key:"))
    }


def test_every_hostile_value_lands_in_its_documented_outcome(demo: Demo) -> None:
    dialect = demo.engine("stockctl").dialect.name
    report = demo.run(ERP_FLOW, 0)
    assert_conserved(demo, report)
    loaded = set(LOADED) | ({"K-NUL-FIELD"} if dialect != "postgresql" else set())
    loaded |= {"K-MEGABYTE"} if dialect == "sqlite" else set()  # SQLite keeps text of any length
    target = _target(demo)
    assert set(target) == loaded
    for key in loaded - {"K-DECIMALS"}:
        assert target[key]["title"] == ITEMS[key][0] and str(target[key]["price"]) == ITEMS[key][1], key
    assert str(target["K-DECIMALS"]["price"]) == "1.23", "rounded half up to the entity's scale of 2"

    held = _held(demo)
    rejected = {"K-PRECISION"} | ({"K-NUL-FIELD"} if dialect == "postgresql" else set())
    rejected |= {"K-MEGABYTE"} if dialect != "sqlite" else set()
    assert {k for k, e in held.items() if e["check_name"] == "target_rejected"} == rejected
    assert all("system 'stockctl'" in held[k]["reason"] for k in rejected)
    bad_keys = {k: e for k, e in held.items() if k.startswith(BAD_KEY_PREFIX)}
    assert len(bad_keys) == 2 and {e["check_name"] for e in bad_keys.values()} == {"storable_key"}
    reasons = " ".join(e["reason"] for e in bad_keys.values())
    assert "'K-NUL\\x00KEY'" in reasons and "U+0000" in reasons and "302 characters long" in reasons
    assert set(held) == rejected | set(bad_keys), "nothing else is held"
    for exception in held.values():
        assert escaped(exception["reason"]) == exception["reason"] and len(exception["reason"]) < 1000

    stored = json.loads(Path(report["path"]).read_text())
    assert stored["totals"]["quarantined"] >= len(held)
    assert "stock_items" in inspect(demo.engine("stockctl")).get_table_names(), "no key ran as SQL"
    assert not [p for p in demo.state.rglob("*") if "passwd" in p.name], "no key became a path"


def test_a_rerun_over_hostile_input_writes_nothing_and_holds_each_record_once(demo: Demo) -> None:
    demo.run(ERP_FLOW, 0)
    before, held = _target(demo), _held(demo)
    again = demo.run(ERP_FLOW, 0, tag="again-")
    assert_conserved(demo, again)
    assert again["totals"]["created"] == 0 and again["totals"]["updated"] == 0
    assert _target(demo) == before
    assert set(_held(demo)) == set(held)


def test_a_change_time_in_the_future_waits_for_its_window_and_the_compare_syncs_it(demo: Demo) -> None:
    """Incremental runs read windows up to their end, so a record changed in the year 9999 waits
    at the source; the full compare reads every record and creates it."""
    demo.run(ERP_FLOW, 0)
    assert "K-FUTURE" not in _target(demo) and "K-FUTURE" not in _held(demo)
    report = run_compare(demo.config, demo.store, ERP_FLOW, f"{ERP_FLOW}:compare:hostile")
    assert report["status"] == "success"
    assert _target(demo)["K-FUTURE"]["title"] == "changed in the year 9999"
