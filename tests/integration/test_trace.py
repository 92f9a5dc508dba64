"""``truesync trace``: one record's path through the runs of the sandbox's demo days, and its live values.

The ground truth is ``labels.csv``: the first run that saw a labelled record must be the trace's
first run, with the labelled class, outcome, overdue flag and check.
"""

from __future__ import annotations

import json

import pytest
from sandbox_demo import FLOWS, SHOP_FLOW, DemoDays
from sqlalchemy import select

from truesync import cli
from truesync.reporting.trace import NOT_FOUND, UNREACHABLE, trace
from truesync.store.schema import ledger

WRITTEN = ("created", "updated")


def test_each_labelled_class_has_the_path_the_labels_predict(demo_days: DemoDays) -> None:
    demo = demo_days.demo
    labels = demo.labels()
    labels = labels[(labels["key"] != "") & labels["flow"].isin(FLOWS)]
    labels = labels.drop_duplicates(["flow", "entity", "key"], keep=False)  # one result foretold, not a race
    seen_classes = set()
    for (flow, klass), group in labels.groupby(["flow", "class"]):
        label = group.iloc[0]
        found = trace(demo.config, demo.store, flow, label["entity"], label["key"])
        first = found["runs"][0]
        assert (first["class"], first["outcome"], first["overdue"], first["check_name"] or "") == (
            klass,
            label["outcome"],
            label["overdue"] == "True",
            label["check"],
        ), found
        assert first["window_start"] <= first["window_end"] and first["kind"] == "sync"
        differs = [v["field"] for v in found["values"] if v["differs"]]
        if label["key"] in demo.active_keys(flow, label["entity"]):
            assert differs, f"a held record differs from its target: {found}"
            assert found["exceptions"][0]["status"] in ("open", "retrying")
        else:
            assert not differs, f"a record not held is in sync now: {found}"
        if label["outcome"] in WRITTEN:
            assert found["ledger"] is not None and found["ledger"]["mapping_version"]
        if klass == "overwritten":
            assert found["overwrites"], "the overwritten target value is in the audit trail"
        seen_classes.add(klass)
    assert seen_classes == {"in_sync", "missing", "delayed", "overwritten", "mismatched", "invalid"}


def test_personal_values_are_masked_unless_the_flow_turns_masking_off(
    demo_days: DemoDays, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = demo_days.demo
    labels = demo.labels()
    key = labels[(labels["flow"] == SHOP_FLOW) & (labels["class"] == "overwritten")]["key"].iloc[0]
    email = demo.by_key("webshop", "customers", "ext_id")[key]["email_address"]
    found = trace(demo.config, demo.store, SHOP_FLOW, "customer", key)
    text = json.dumps(found, default=str)
    assert email not in text and "***@" in text
    assert all(o["overwritten_value"] is None or "***" in o["overwritten_value"] for o in found["overwrites"])

    held = labels[(labels["flow"] == SHOP_FLOW) & (labels["check"] == "expect_column_values_to_be_in_set")]
    held_key = held[held["entity"] == "customer"]["key"].iloc[0]
    held_email = demo.by_key("webshop", "customers", "ext_id")[held_key]["email_address"]
    queued = trace(demo.config, demo.store, SHOP_FLOW, "customer", held_key)["exceptions"]
    assert queued and held_email not in queued[0]["payload"] and "***@" in queued[0]["payload"]

    monkeypatch.setattr(demo.config.flows[SHOP_FLOW].quality, "mask_pii", False)
    found = trace(demo.config, demo.store, SHOP_FLOW, "customer", key)
    values = {v["field"]: v for v in found["values"]}
    assert values["email"]["source"] == values["email"]["target"] == email


def test_the_command_prints_the_path_and_json(demo_days: DemoDays, capsys: pytest.CaptureFixture[str]) -> None:
    labels = demo_days.demo.labels()
    label = labels[(labels["flow"] == SHOP_FLOW) & (labels["class"] == "invalid")].iloc[0]
    assert cli.main(["trace", SHOP_FLOW, label["entity"], label["key"]]) == 0
    text = capsys.readouterr().out
    for section in ("runs:", "ledger:", "overwritten in the target:", "exceptions:", "values now (! differs):"):
        assert section in text
    assert f"invalid → quarantined; {label['check']}" in text
    assert cli.main(["trace", SHOP_FLOW, label["entity"], label["key"], "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["runs"][0]["check_name"] == label["check"] and found["exceptions"]


def test_a_key_nobody_holds_and_bad_names_answer_clearly(
    demo_days: DemoDays, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = demo_days.demo
    found = trace(demo.config, demo.store, SHOP_FLOW, "customer", "C9999999")
    assert (found["runs"], found["ledger"], found["overwrites"], found["exceptions"], found["values"]) == (
        [],
        None,
        [],
        [],
        [],
    )
    assert cli.main(["trace", SHOP_FLOW, "customer", "C9999999"]) == 0
    assert "none saw this record" in capsys.readouterr().out
    assert cli.main(["trace", "no_such_flow", "customer", "C1"]) == 1
    assert "no flow 'no_such_flow'" in capsys.readouterr().err
    assert cli.main(["trace", SHOP_FLOW, "stock_item", "C1"]) == 1
    err = capsys.readouterr().err
    assert "flow 'webshop_to_crm' has no entity 'stock_item'" in err and "Traceback" not in err


def test_a_record_missing_from_the_target_shows_as_not_found(demo_days: DemoDays) -> None:
    demo = demo_days.demo
    labels = demo.labels()
    waiting = labels[(labels["flow"] == SHOP_FLOW) & (labels["check"] == "parent_exists")]["key"].iloc[0]
    found = trace(demo.config, demo.store, SHOP_FLOW, "order", waiting)
    assert {v["target"] for v in found["values"]} == {NOT_FOUND}
    assert found["exceptions"][0]["check_name"] == "parent_exists"


def test_an_unreachable_system_is_named_and_the_history_still_shows(
    demo_days: DemoDays, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = demo_days.demo
    query = select(ledger.c.key).where(ledger.c.flow == SHOP_FLOW, ledger.c.entity == "customer").limit(1)
    with demo.store.engine.connect() as conn:
        synced = ("customer", conn.execute(query).scalar_one())
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_CRM", "postgresql+psycopg2://sync:s3cr3t-pw@127.0.0.1:1/crm")
    found = trace(demo.config, demo.store, SHOP_FLOW, *synced)
    assert list(found["unavailable"]) == ["crm"] and "unreachable" in found["unavailable"]["crm"]
    assert found["runs"] and found["ledger"], "the store's history"
    assert {v["target"] for v in found["values"]} == {UNREACHABLE}
    assert not any(v["differs"] for v in found["values"]) and {v["source"] for v in found["values"]} - {NOT_FOUND}
    assert cli.main(["trace", SHOP_FLOW, *synced]) == 0
    out = capsys.readouterr().out
    assert "unreachable crm: system 'crm'" in out and "s3cr3t-pw" not in out + json.dumps(found, default=str)
