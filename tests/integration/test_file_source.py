"""Systems of kind ``file``: POS-style CSV and JSON Lines drops read through ``ObjectStoragePath``.

A flow from a folder of terminal exports into a SQLite back office, run window after
window: which files are read (new, redelivered, rewritten, growing, partly read, late),
what their bad rows and headers become, and what the file ledger remembers. One test
reads the same drop from fsspec's in-memory filesystem, so nothing assumes a local path.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fsspec.implementations.memory import MemoryFileSystem
from pos_drop import DAY, FLOW, HEADER, Drop, at, counts, events
from sqlalchemy import select

from truesync.config import EntityMapping
from truesync.connectors.errors import ConfigurationProblem
from truesync.store import files
from truesync.store.schema import files as file_table


@pytest.fixture
def drop(state: Path, monkeypatch: pytest.MonkeyPatch) -> Drop:
    return Drop(state, monkeypatch)


def test_new_files_are_read_once_and_only_up_to_the_window(drop: Drop) -> None:
    drop.write("T1/2026-11-02.csv", events(("E1", "T1", "A00", "10.00", at(0, 9)), ("E2", "T1", "E07", "0", at(0, 10))))
    drop.write("T2/2026-11-02.csv", events(("E3", "T2", "A00", "7.5", at(0, 11)), ("E4", "T2", "A00", "1", at(1, 1))))
    drop.write("T2/notes.txt", "not an export")
    first = drop.run(0)
    assert set(drop.rows()) == {"E1", "E2", "E3"}  # E4 changed after the window's end: it waits
    assert counts(first)["created"] == 3
    assert drop.rows()["E3"]["amount"] == pytest.approx(7.5)
    marks = drop.marks()
    assert set(marks) == {"T1/2026-11-02.csv", "T2/2026-11-02.csv"}
    assert marks["T2/2026-11-02.csv"].latest == DAY + timedelta(days=1, hours=1)
    assert marks["T2/2026-11-02.csv"].read_until == DAY + timedelta(days=1)

    again = drop.run(0)  # the same window again: every file is read, nothing is extracted
    assert counts(again)["extracted"] == 0
    second = drop.run(1)  # the next window takes the rest of the partly read file, and only that
    assert counts(second)["extracted"] == 1
    assert set(drop.rows()) == {"E1", "E2", "E3", "E4"}
    assert drop.marks()["T2/2026-11-02.csv"].read_until == DAY + timedelta(days=2)


def test_a_redelivered_file_is_read_once_a_rewritten_one_again_a_late_one_fully(drop: Drop) -> None:
    body = events(("E1", "T1", "A00", "10.00", at(0, 9)), ("E2", "T1", "A00", "5.00", at(0, 10)))
    drop.write("T1/2026-11-02.csv", body)
    drop.run(0)
    drop.write("T1/2026-11-02 (copy).csv", body)  # delivered twice, under another name
    path = drop.write("T1/2026-11-02.csv", body)  # and the same content again, touched
    os.utime(path, (time.time() - 30, time.time() - 30))
    redelivered = drop.run(1)
    assert counts(redelivered)["extracted"] == 0
    copy = drop.marks()["T1/2026-11-02 (copy).csv"]
    assert copy.read_until == DAY + timedelta(days=2) and copy.latest < DAY + timedelta(days=1)  # nothing left in it

    drop.write(
        "T1/2026-11-02.csv", events(("E1", "T1", "A00", "10.00", at(0, 9)), ("E2", "T1", "S13", "5.00", at(0, 12)))
    )
    drop.write("T3/2026-11-01.csv", events(("E9", "T3", "A00", "3.00", at(-1, 8))))  # a late file of an old day
    rewritten = drop.run(2)
    numbers = counts(rewritten)
    assert numbers["extracted"] == 3  # the rewritten file whole (E1 unchanged, E2 changed), and the late one
    assert (numbers["unchanged"], numbers["updated"], numbers["created"]) == (1, 1, 1)
    assert drop.rows()["E2"]["state"] == "signature_failed" and "E9" in drop.rows()


def test_bad_rows_and_headers_are_quarantined_with_file_and_line_and_the_rest_loads(drop: Drop) -> None:
    drop.write("T1/2026-11-02.csv", events(
        ("E1", "T1", "A00", "10.00", at(0, 9)),
        ("E2", "T1", "A00", "-4.00", at(0, 10)),  # a range check fails
        ("E3", "T1", "A00", "1.00", "yesterday"),  # no readable change time
    ) + "E4,T1,A00\n" + "E5,T1,A00,2.00," + at(0, 11) + "\n")  # fmt: skip
    drop.write("T2/2026-11-02.csv", "event_id,terminal_id,amount\nE6,T2,1.00\n")
    report = drop.run(0)
    assert set(drop.rows()) == {"E1", "E5"}
    held = {e["key"]: e for e in drop.exceptions()}
    assert "T1/2026-11-02.csv line 3" in held["E2"]["reason"] and held["E2"]["field"] == "amount"
    assert "T1/2026-11-02.csv line 4" in held["E3"]["reason"] and held["E3"]["field"] == "event_time"
    unread = {e["check_name"]: e["reason"] for e in held.values() if e["key"].startswith("null-key:")}
    assert len([e for e in held.values() if e["check_name"] == "readable_row"]) == 2
    reasons = [e["reason"] for e in held.values() if e["check_name"] == "readable_row"]
    assert "T1/2026-11-02.csv line 5 has 3 fields where the header has 5" in reasons
    (header,) = [r for r in reasons if r.startswith("T2/")]
    assert header.startswith("T2/2026-11-02.csv has a header without column(s) ") and "(it has event_id," in header
    assert {"code", "event_time"} == set(header.split("column(s) ")[1].split(" (")[0].split(", "))
    assert "readable_row" in unread
    numbers = counts(report)
    assert numbers["extracted"] == numbers["created"] + numbers["quarantined"] == 6

    again = drop.run(1)  # the files still hold them: seen again, not resolved, not duplicated
    assert len(drop.exceptions()) == 4
    assert counts(again)["exceptions_resolved"] == 0
    drop.write("T2/2026-11-02.csv", HEADER + "E6,T2,A00,1.00," + at(0, 12) + "\n")  # fixed and delivered again
    fixed = drop.run(2)
    assert "E6" in drop.rows() and counts(fixed)["exceptions_resolved"] >= 1
    assert not any("T2/" in e["reason"] for e in drop.exceptions())


def test_files_still_being_written_wait_for_the_next_run(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drop = Drop(state, monkeypatch, settle="1s")
    drop.write("T1/2026-11-02.csv", events(("E1", "T1", "A00", "1.00", at(0, 9))))
    drop.write("T1/2026-11-02b.csv.part", events(("E2", "T1", "A00", "1.00", at(0, 9))))
    growing = drop.write("T2/2026-11-02.csv", events(("E3", "T2", "A00", "1.00", at(0, 9))))
    old = time.time() - 60
    os.utime(drop.folder / "T1/2026-11-02.csv", (old, old))

    def append_later() -> None:
        time.sleep(0.3)
        with growing.open("a") as handle:
            handle.write(f"E4,T2,A00,1.00,{at(0, 10)}\n")

    writer = threading.Thread(target=append_later)
    writer.start()
    drop.run(0)
    writer.join()
    assert set(drop.rows()) == {"E1"}  # the .part file is not read; the growing one waits
    (drop.folder / "T1/2026-11-02b.csv.part").rename(drop.folder / "T1/2026-11-02b.csv")
    time.sleep(1.1)
    drop.run(0)
    assert set(drop.rows()) == {"E1", "E2", "E3", "E4"}


def test_an_empty_drop_is_a_configuration_problem_until_a_file_was_read(drop: Drop) -> None:
    with pytest.raises(ConfigurationProblem, match=r"matches no file \(glob '\*/\*.csv'\)"):
        drop.run(0)
    drop.write("T1/2026-11-02.csv", events(("E1", "T1", "A00", "1.00", at(0, 9))))
    drop.run(0)
    (drop.folder / "T1/2026-11-02.csv").unlink()  # archived away: an empty drop is now just quiet
    assert counts(drop.run(1))["extracted"] == 0


def test_a_missing_folder_or_an_unknown_scheme_is_named(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drop = Drop(state, monkeypatch, url=(state / "nowhere").as_uri())
    with pytest.raises(ConfigurationProblem, match="the folder does not exist"):
        drop.run(0)
    monkeypatch.setenv("AIRFLOW_CONN_TEST_POS", "nosuchfs://bucket/pos")
    with pytest.raises(ConfigurationProblem, match="nosuchfs"):
        drop.run(0)


def test_a_retried_or_failed_run_reads_its_files_again(drop: Drop) -> None:
    drop.write("T1/2026-11-02.csv", events(("E1", "T1", "A00", "1.00", at(0, 9))))
    ledger = files.Ledger(drop.store, FLOW, "pos_event", "crashed")
    from truesync.connectors.registry import open_source

    source = open_source(drop.config, "pos")
    source.remember(ledger)
    mapping = drop.config.entity_mapping("pos", "pos_event")
    assert sum(len(f) for f in source.extract(mapping, DAY, DAY + timedelta(days=1), 10)) == 1
    assert drop.marks() == {}  # recorded, not committed: the crashed run never committed its watermark
    drop.run(0)
    assert set(drop.rows()) == {"E1"} and set(drop.marks()) == {"T1/2026-11-02.csv"}
    with drop.store.engine.connect() as conn:  # the crashed run's mark of the same file is gone
        assert conn.execute(select(file_table.c.run_id)).scalars().all() == ["run1"]


def test_a_narrowed_read_of_the_files_never_stands_in_for_the_full_one(drop: Drop) -> None:
    """A compare first asks a file source for keys only, then for whole records: each gets its columns."""
    from truesync.connectors.registry import open_source

    drop.write("T1/2026-11-02.csv", events(("E1", "T1", "A00", "10.00", at(0, 9))))
    source, mapping = open_source(drop.config, "pos"), drop.config.entity_mapping("pos", "pos_event")
    keys_only = source.fetch(mapping.narrowed([]), ["E1"])
    assert "amount" not in keys_only.columns and list(keys_only["event_id"]) == ["E1"]
    whole = next(source.scan(mapping, 10))
    assert whole.loc[0, "amount"] == "10.00" and whole.loc[0, "terminal_id"] == "T1"


def test_json_lines_from_an_in_memory_filesystem(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.io import attach

    memory = MemoryFileSystem()
    attach("memory", fs=memory)
    lines = [
        {"event_id": "E1", "terminal_id": "T1", "code": "A00", "amount": 12.50, "event_time": at(0, 9)},
        {"event_id": "E2", "terminal_id": "T1", "code": "A00", "amount": 1, "event_time": at(0, 10)},
        [1, 2],
    ]
    memory.pipe("/pos-drop/T1/2026-11-02.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode())
    try:
        drop = Drop(state, monkeypatch, url="memory://pos-drop", fmt="jsonl")
        drop.run(0)
        assert set(drop.rows()) == {"E1", "E2"} and drop.rows()["E1"]["amount"] == pytest.approx(12.5)
        (reason,) = [e["reason"] for e in drop.exceptions()]
        assert reason == "T1/2026-11-02.jsonl line 3 is not a JSON object"
        assert set(drop.marks()) == {"T1/2026-11-02.jsonl"} and drop.marks()["T1/2026-11-02.jsonl"].modified is None
        again = counts(drop.run(0))  # no times here: the content is checksummed, found unchanged
        assert (again["extracted"], again["quarantined"], again["exceptions_opened"]) == (1, 1, 0)  # the bad line
    finally:
        memory.rm("/pos-drop", recursive=True)


def test_an_older_version_read_again_never_overwrites_a_newer_one(drop: Drop) -> None:
    drop.write("T1/2026-11-02.csv", events(("E1", "T1", "A00", "10.00", at(0, 9))))
    drop.write("T1/2026-11-02-late.csv", events(("E1", "T1", "S13", "10.00", at(0, 15))))  # the newer version
    drop.run(0)
    assert drop.rows()["E1"]["state"] == "signature_failed"
    drop.write("T1/2026-11-02.csv", events(("E1", "T1", "A00", "10.00", at(0, 9)), ("E2", "T1", "A00", "1", at(0, 10))))
    rewritten = counts(drop.run(1))  # the rewritten file brings E1's older version again
    assert (rewritten["extracted"], rewritten["unchanged"], rewritten["created"], rewritten["updated"]) == (2, 1, 1, 0)
    assert drop.rows()["E1"]["state"] == "signature_failed"


def test_a_copy_carries_on_where_its_original_stopped(drop: Drop) -> None:
    body = events(("E1", "T1", "A00", "1.00", at(0, 9)), ("E2", "T1", "A00", "2.00", at(1, 9)))
    drop.write("T1/2026-11-02.csv", body)
    drop.write("T1/2026-11-02 (again).csv", body)  # delivered twice at once: read once
    assert counts(drop.run(0))["extracted"] == 1 and set(drop.rows()) == {"E1"}
    (drop.folder / "T1/2026-11-02.csv").unlink()  # the original goes; its copy still holds E2 for day 1
    drop.write("T1/2026-11-03.csv", body)  # and a third copy arrives after both were read
    assert counts(drop.run(1))["extracted"] == 1 and set(drop.rows()) == {"E1", "E2"}


def test_a_composite_key_tells_apart_records_that_share_one_column_and_finds_them_by_both(drop: Drop) -> None:
    """Keyed by terminal and event id, E1 of T1 and E1 of T2 are two records; each keeps its newest version."""
    from truesync.connectors.registry import open_source

    early = (("E1", "T1", "A00", "1.00", at(0, 9)), ("E1", "T2", "A00", "2.00", at(0, 9)))
    drop.write("T1/2026-11-02.csv", events(*early))
    late = (("E1", "T1", "A00", "3.00", at(0, 12)), ("E2", "", "A00", "4", at(0, 9)))
    drop.write("T1/2026-11-02-late.csv", events(*late))
    source = open_source(drop.config, "pos")
    mapping = EntityMapping.model_validate(
        {**drop.config.entity_mapping("pos", "pos_event").model_dump(by_alias=True), "key": ["terminal_id", "event_id"]}
    )
    newest = next(source.scan(mapping, 10)).set_index(["terminal_id", "event_id"])["amount"].to_dict()
    assert newest == {("T1", "E1"): "3.00", ("T2", "E1"): "2.00"}, "a row without a terminal has no key"
    found = source.fetch(mapping, ["T2|E1", "T9|E1", "not split"])
    assert (found["terminal_id"].tolist(), found["amount"].tolist()) == (["T2"], ["2.00"])
