"""Preparing extracted rows for staging: mapping errors, null keys, lookback deduplication."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from truesync.config import load_config
from truesync.core.text import BAD_KEY_PREFIX, KEY_LENGTH, escaped
from truesync.pipeline.extract import NULL_KEY_PREFIX, batched, prepare
from truesync.pipeline.job import EntityJob
from truesync.store import Store, staging
from truesync.support.frames import records


@pytest.fixture
def job(state: Path) -> EntityJob:
    return EntityJob(load_config(), Store(), "erp_to_stockctl", "stock_item", "run-1")


def _items(*rows: tuple[str | None, str, str, datetime]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["sku", "description", "unit_price", "changed_at"], dtype=object)
    frame["currency"] = "EUR"
    return frame


def _prepared(job: EntityJob, raw: pd.DataFrame) -> list[dict]:
    """The rows ``prepare`` stages, as dicts."""
    return records(prepare(job, raw))


def _by_key(staged: list[dict]) -> dict[str, dict]:
    return {row["key"]: row for row in staged}


def test_a_record_seen_twice_keeps_its_latest_version(job: EntityJob) -> None:
    staged = _by_key(
        _prepared(
            job,
            _items(
                ("A", "old name", "1.00", datetime(2026, 11, 1, 22)),
                ("A", "new name", "1.50", datetime(2026, 11, 1, 23)),
                ("B", "same", "2.00", datetime(2026, 11, 1, 9)),
                ("B", "same", "2.00", datetime(2026, 11, 1, 9)),
            ),
        )
    )
    assert set(staged) == {"A", "B"}
    assert json.loads(staged["A"]["payload"])["name"] == "new name"
    assert staged["A"]["source_ts"] == datetime(2026, 11, 1, 23)
    assert staged["A"]["check_name"] is None and staged["B"]["check_name"] is None


def test_two_versions_at_the_same_time_are_a_duplicate_key(job: EntityJob) -> None:
    staged = _by_key(
        _prepared(
            job,
            _items(
                ("A", "one", "1.00", datetime(2026, 11, 1, 9)),
                ("A", "two", "1.00", datetime(2026, 11, 1, 9)),
                ("B", "fine", "3.00", datetime(2026, 11, 1, 9)),
            ),
        )
    )
    assert staged["A"]["check_name"] == "expect_compound_columns_to_be_unique" and staged["A"]["field"] == "sku"
    assert "same change time" in staged["A"]["reason"] and staged["A"]["value"] == "A @ 2026-11-01T09:00:00.000000"
    assert staged["B"]["check_name"] is None


def test_bad_values_and_null_keys_are_flagged_with_field_and_reason(job: EntityJob) -> None:
    staged = _prepared(
        job,
        _items(
            (None, "no key", "1.00", datetime(2026, 11, 1, 9)),
            ("C", "bad price", "12,5O", datetime(2026, 11, 1, 9)),
            ("D", "good", "4.00", datetime(2026, 11, 1, 9)),
        ),
    )
    by_check = {row["check_name"]: row for row in staged}
    keyless = by_check["expect_column_values_to_not_be_null"]
    assert keyless["key"].startswith(NULL_KEY_PREFIX) and keyless["field"] == "sku"
    assert json.loads(keyless["payload"])["description"] == "no key", "the original row is kept"
    price = by_check["expect_column_values_to_match_regex"]
    assert price["key"] == "C" and price["field"] == "price" and price["value"] == "12,5O"
    assert (
        price["reason"] == "expect_column_values_to_match_regex: field 'price' must be a decimal number; found '12,5O'"
    )
    assert by_check[None]["key"] == "D"


def test_the_same_keyless_row_gets_the_same_name_every_time(job: EntityJob) -> None:
    row = (None, "no key", "1.00", datetime(2026, 11, 1, 9))
    assert _prepared(job, _items(row))[0]["key"] == _prepared(job, _items(row))[0]["key"]


def test_a_row_without_change_time_is_held_not_skipped(job: EntityJob) -> None:
    staged = _by_key(
        _prepared(job, _items(("A", "no time", "1.00", None), ("B", "fine", "2.00", datetime(2026, 11, 1))))
    )
    assert (staged["A"]["check_name"], staged["A"]["field"]) == ("expect_column_values_to_not_be_null", "change_time")
    assert "column 'changed_at'" in staged["A"]["reason"]
    assert staged["B"]["check_name"] is None


def test_an_unreadable_key_keeps_its_own_text_so_it_is_retried_by_key(state: Path) -> None:
    config = load_config()
    config.entities["stock_item"].fields["sku"].type = "integer"
    job = EntityJob(config, Store(), "erp_to_stockctl", "stock_item", "run-1")
    staged = _prepared(job, _items(("12x", "bad key", "1.00", datetime(2026, 11, 1))))
    assert staged[0]["key"] == "12x" and staged[0]["check_name"] == "expect_column_values_to_match_regex"


def test_chunks_are_joined_into_batches_for_the_checks_and_nothing_is_lost() -> None:
    chunks = [pd.DataFrame({"n": range(i * 10, i * 10 + 10)}) for i in range(7)]
    batches = list(batched(iter(chunks), 25))
    assert [len(b) for b in batches] == [30, 30, 10]
    assert pd.concat(batches)["n"].tolist() == list(range(70))
    assert list(batched(iter([]), 25)) == []


def test_one_instant_spelled_two_ways_is_a_duplicate_key(job: EntityJob) -> None:
    staged = _by_key(
        _prepared(
            job,
            _items(
                ("A", "one", "1.00", "2026-11-01T09:00:00Z"),
                ("A", "two", "1.00", "2026-11-01 10:00:00+01:00"),
            ),
        )
    )
    assert staged["A"]["check_name"] == "expect_compound_columns_to_be_unique"


def test_a_version_with_an_unreadable_change_time_never_beats_a_timed_one(job: EntityJob) -> None:
    staged = _by_key(
        _prepared(job, _items(("A", "timed", "1.00", datetime(2026, 11, 1, 9)), ("A", "?", "1.00", "soon")))
    )
    assert json.loads(staged["A"]["payload"])["name"] == "timed" and staged["A"]["check_name"] is None


def test_checks_find_bad_rows_without_gx_fingerprinting_the_batch(job: EntityJob, monkeypatch) -> None:
    """GX hashes every pandas batch for a marker truesync never reads; it is switched off (``quality.checks``)."""
    from great_expectations.execution_engine import pandas_execution_engine

    def refuse(frame: pd.DataFrame) -> str:
        raise AssertionError("GX fingerprinted a batch")

    monkeypatch.setattr(pandas_execution_engine, "hash_pandas_dataframe", refuse)
    staged = _by_key(
        _prepared(job, _items(("A", "ok", "1.00", datetime(2026, 11, 1)), ("B", "bad", "1,0O", datetime(2026, 11, 1))))
    )
    assert staged["A"]["check_name"] is None and staged["B"]["check_name"] == "expect_column_values_to_match_regex"


def test_a_payload_keeps_text_as_written(job: EntityJob) -> None:
    odd = 'quote " back\\slash tab\t new\nline ümlaut 漢字 🦜 \u2028'
    payload = json.loads(_by_key(_prepared(job, _items(("A", odd, "1.00", datetime(2026, 11, 1)))))["A"]["payload"])
    assert payload["name"] == odd


def test_a_lone_surrogate_a_json_source_can_send_is_staged_and_read_back(job: EntityJob) -> None:
    lone = "broken \ud800 text"
    staged = prepare(
        job, _items(("A", lone, "1.00", datetime(2026, 11, 1)), ("B", "fine", "2.00", datetime(2026, 11, 1)))
    )
    back = staging.parse_payloads(staged["payload"].tolist(), pd.Index(staged["key"]))
    assert back.loc["A", "name"] == lone and back.loc["B", "name"] == "fine"


def test_a_key_no_store_can_hold_is_held_under_a_stand_in_name_and_shown_escaped(job: EntityJob) -> None:
    """U+0000, a lone surrogate and a key longer than the store's key columns: each is ``invalid``
    (``storable_key``) under ``bad-key:<hash>``; the longest key that fits is staged as it is."""
    day, later = datetime(2026, 11, 1, 9), datetime(2026, 11, 1, 10)
    fits, too_long = "K" * KEY_LENGTH, "L" * (KEY_LENGTH + 1)
    staged = _prepared(
        job,
        _items(
            ("A\x00B", "first", "1.00", day),
            ("lone \udc80", "surrogate", "1.00", day),
            (too_long, "long", "1.00", day),
            (fits, "fits", "1.00", day),
            ("A\x00B", "second", "1.00", later),
        ),
    )
    assert _by_key(staged)[fits]["check_name"] is None
    held = {row["value"]: row for row in staged if row["key"].startswith(BAD_KEY_PREFIX)}
    assert len(held) == 3, "the NUL key's two versions settle into one record"
    assert {row["check_name"] for row in held.values()} == {"storable_key"}
    assert {row["field"] for row in held.values()} == {"sku"}
    nul, lone = held["'A\\x00B'"], held["'lone \\udc80'"]
    assert "U+0000" in nul["reason"] and json.loads(nul["payload"])["name"] == "second", "the latest version wins"
    assert "lone surrogate" in lone["reason"]
    long = next(row for value, row in held.items() if value.startswith("'LLL"))
    assert f"{KEY_LENGTH + 1:,} characters long" in long["reason"] and len(long["value"]) < 100
    for row in staged:
        assert escaped(row["reason"] or "") == (row["reason"] or ""), "no text a store cannot hold"


def test_a_flagged_value_no_store_can_hold_is_kept_escaped(job: EntityJob) -> None:
    staged = _by_key(_prepared(job, _items(("C", "bad price", "12,5\x00\ud800", datetime(2026, 11, 1, 9)))))
    assert staged["C"]["check_name"] == "expect_column_values_to_match_regex"
    assert staged["C"]["value"] == "12,5\\x00\\ud800"


def test_text_is_held_in_python_storage_whatever_else_is_installed() -> None:
    """pyarrow, when another package brings it, would change how checks see odd text (above)."""
    assert pd.get_option("mode.string_storage") == "python"
    assert pd.Series(["a", None]).dtype.storage == "python"
