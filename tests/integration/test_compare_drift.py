"""Labelled quiet drift: a full compare finds exactly what ``compare_labels.csv`` says, then nothing new.

``truesync sandbox init`` plans the quiet drift and labels it; both SQL flows run over the
demo days in-process, then ``truesync sandbox drift`` applies it (refused before the demo
days and a second time). No incremental run sees any of it. The compare of each flow must
then report, among the records it does not find in sync, exactly the labelled records with
their class, ``quiet`` flag and outcome. Keys with an active exception from the earlier runs
are left out: they are known problems already in the queue (records failing a check, orders
waiting for their customer), which the compare classifies again and leaves there.

After the repairs a second compare finds nothing new: every record is in sync or already
queued, except what a compare reports and never touches (``target_only``, and ``deleted``
under the sandbox's delete policy ``report``), which it reports again. Under ``deletes: delete``
the deleted records are removed from the target, so only ``target_only`` is reported again.

On SQLite always; with ``TRUESYNC_TEST_POSTGRES_URL`` and ``TRUESYNC_TEST_MYSQL_URL`` also
with the CRM and the store on PostgreSQL and stock control on MariaDB (``deletes: delete``:
rows really removed there).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sandbox_demo import FLOWS, Demo
from sqlalchemy import select

from truesync import cli
from truesync.config import load_config
from truesync.pipeline.compare import run_compare
from truesync.sandbox import DEMO_DAYS
from truesync.sandbox import systems as sandbox
from truesync.store import Store, queue
from truesync.store.schema import results
from truesync.support.paths import PROJECT_ROOT

COLUMNS = ["entity", "key", "class", "quiet", "outcome"]


@pytest.fixture(params=[("sqlite", "report"), ("sqlite", "delete"), ("servers", "delete")], ids="-".join)
def box(request: pytest.FixtureRequest, state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """A fresh sandbox at scale 200 on SQLite, or with the CRM and the store on PostgreSQL and stock control on
    MariaDB; under the sandbox's delete policy (``report``) or with every entity's ``deletes: delete``.
    """
    systems, policy = request.param
    if systems == "servers":
        postgres, mysql = request.getfixturevalue("postgres_databases"), request.getfixturevalue("mysql_url")
        for name, url in (("CRM", postgres.new()), ("STORE", postgres.new()), ("STOCKCTL", mysql)):
            monkeypatch.setenv(f"AIRFLOW_CONN_TRUESYNC_{name}", url.render_as_string(hide_password=False))
    if policy == "delete":
        monkeypatch.setenv("TRUESYNC_CONFIG_DIR", str(_deleting(tmp_path / "config")))
    assert cli.main(["sandbox", "init", "--scale", "200"]) == 0
    config = load_config()
    handle = Demo(config, Store(), state, sandbox.system_urls(config))
    if systems == "servers":
        assert handle.store.engine.dialect.name == handle.engine("crm").dialect.name == "postgresql"
        assert handle.engine("stockctl").dialect.name in ("mysql", "mariadb")
    yield handle
    handle.close()


def _deleting(directory: Path) -> Path:
    """The project's configuration with ``deletes: delete`` for every entity of the compared flows,
    in chunks of 7 records: each side is scanned in many chunks, read ahead and written behind, and
    the differences come in many pages.

    The share guard allows 2%: at scale 200 one stock item is more than 1% of stock control.
    """
    shutil.copytree(PROJECT_ROOT / "include" / "config", directory)
    flows = yaml.safe_load((directory / "flows.yaml").read_text())
    for flow in FLOWS:
        spec = flows["flows"][flow]
        spec["compare"] = {"max_delete_share": 0.02, "deletes": dict.fromkeys(spec["entities"], "delete")}
        spec["chunk_size"] = 7
    (directory / "flows.yaml").write_text(yaml.safe_dump(flows, sort_keys=False))
    return directory


def test_a_compare_finds_exactly_the_labelled_quiet_drift_then_nothing_new(
    box: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = box
    labels = _compare_labels(demo)
    assert set(labels["class"]) == {"overwritten", "deleted", "target_only", "delayed", "missing"}
    for flow in FLOWS:
        mine = labels[labels["flow"] == flow]
        kinds = mine.groupby("entity")["class"].nunique()
        assert set(kinds.index) == set(demo.config.flows[flow].entities) and (kinds == 5).all(), (flow, kinds)

    untouched = _systems(demo)
    assert cli.main(["sandbox", "drift"]) == 1, "no flow has synced anything yet"
    assert "has not synced the demo days yet" in capsys.readouterr().err
    assert _systems(demo) == untouched

    for report in demo.run_demo_days():
        assert report["status"] == "success", report
    assert cli.main(["sandbox", "drift"]) == 0
    drifted = _systems(demo)
    assert drifted != untouched
    assert cli.main(["sandbox", "drift"]) == 1, "the drift is applied once"
    assert "applied already" in capsys.readouterr().err
    assert _systems(demo) == drifted

    for flow in FLOWS:  # quiet: the next incremental window sees none of it
        report = demo.run(flow, DEMO_DAYS, tag="after-drift-")
        seen = set(_results(demo, report["run_id"])["key"])
        assert not seen & set(labels.loc[labels["flow"] == flow, "key"]), flow

    for flow in FLOWS:
        want = labels[labels["flow"] == flow][COLUMNS]
        found = _compare(demo, flow, "compare-1")
        _assert_same(flow, want, found)
        again = _compare(demo, flow, "compare-2")
        _assert_same(flow, want[want["outcome"] == "reported"], again)


def _compare_labels(demo: Demo) -> pd.DataFrame:
    frame = pd.read_csv(demo.state / "sandbox" / "compare_labels.csv", dtype=str, keep_default_na=False)
    return frame.assign(quiet=frame["quiet"] == "True")


def _systems(demo: Demo) -> dict[str, object]:
    return {system: demo.snapshot(system) for system in sorted(demo.urls)}


def _compare(demo: Demo, flow: str, name: str) -> pd.DataFrame:
    """A full compare of the flow: its records not in sync, without keys an earlier run left in the queue."""
    queued = {(e["entity"], e["key"]) for e in demo.exceptions(flow) if e["status"] in queue.ACTIVE}
    report = run_compare(demo.config, demo.store, flow, f"{flow}:{name}")
    found = _results(demo, report["run_id"])
    known = pd.Series([(e, k) in queued for e, k in zip(found["entity"], found["key"], strict=True)], dtype=bool)
    assert not found.loc[known.to_numpy(), "quiet"].any(), "a record the queue held already is not quiet drift"
    fresh = found[(found["class"] != "in_sync") & ~known.to_numpy()]
    drift = {e: sum(body["counts"].values()) for e, body in (report.get("quiet_drift") or {}).items()}
    assert drift == fresh[fresh["quiet"]].groupby("entity").size().to_dict(), "the report counts what it flags"
    return fresh


def _results(demo: Demo, run_id: str) -> pd.DataFrame:
    columns = [results.c[c] for c in COLUMNS]
    with demo.store.engine.connect() as conn:
        rows = conn.execute(select(*columns).where(results.c.run_id == run_id)).all()
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.assign(quiet=frame["quiet"].fillna(False).astype(bool))


def _assert_same(flow: str, want: pd.DataFrame, found: pd.DataFrame) -> None:
    merged = want.merge(found, on=["entity", "key"], how="outer", suffixes=("_want", "_found"), indicator=True)
    wrong = merged["_merge"] != "both"
    for column in ("class", "quiet", "outcome"):
        wrong |= merged[f"{column}_want"] != merged[f"{column}_found"]
    assert not wrong.any(), f"{flow}: the compare differs from compare_labels.csv:\n{merged[wrong].to_string()}"
