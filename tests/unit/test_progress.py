"""The progress log's own rules (``truesync.pipeline.progress``): no secret or e-mail address, counts per chunk."""

from __future__ import annotations

import logging
from datetime import datetime
from types import SimpleNamespace

import pytest

from truesync.pipeline import progress
from truesync.pipeline.window import Window
from truesync.store.staging import Partition


def test_scrub_hides_passwords_in_urls_and_masks_email_addresses() -> None:
    text = "cannot reach postgresql+psycopg2://sync:s3cr3t-pw@db.internal:5432/crm for ann.lee@example.co.uk"
    scrubbed = progress.scrub(text)
    assert "s3cr3t-pw" not in scrubbed and "postgresql+psycopg2://sync:***@db.internal:5432/crm" in scrubbed
    assert "ann.lee@example.co.uk" not in scrubbed and "a***@e***.uk" in scrubbed
    assert progress.scrub("http://:sandbox-token@127.0.0.1:8701") == "http://:***@127.0.0.1:8701"
    assert progress.scrub("key 'C0000050 @ 2026-11-01' and 'c0000052.example.com'") == (
        "key 'C0000050 @ 2026-11-01' and 'c0000052.example.com'"
    )


def test_a_sync_task_logs_each_chunk_and_the_running_totals(caplog: pytest.LogCaptureFixture) -> None:
    config = SimpleNamespace(flows={"f": SimpleNamespace(source="shop", target="crm")})
    job = SimpleNamespace(config=config, store=None, flow="f", entity="customer", run_id="f:r1")
    caplog.set_level(logging.INFO, logger="truesync")
    shown = progress.Syncing(job, Window(datetime(2026, 11, 1), datetime(2026, 11, 2)), Partition(1, "C1", "C5"), False)
    shown.chunk({"in_sync": 3, "missing": 2, "created": 2, "unchanged": 3})
    shown.chunk({"in_sync": 4, "missing": 2, "invalid": 1, "created": 2, "unchanged": 4, "quarantined": 1})
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "sync started: flow f, entity customer, window 2026-11-01T00:00:00..2026-11-02T00:00:00, "
        "partition p0001 keys [C1..C5), run f:r1, target crm"
    )
    assert lines[1].startswith("sync customer p0001: chunk 1: classified 5 (in_sync=3 missing=2 delayed=0")
    assert lines[2].endswith(
        "chunk 2: classified 2 (in_sync=1 missing=0 delayed=0 overwritten=0 mismatched=0 invalid=1), written 0, "
        "held 1; so far classified 7, written 2, held 1"
    )
    assert {r.name for r in caplog.records} == {"truesync.pipeline.load"}


def test_the_slowest_stage_of_a_run() -> None:
    entities = {
        "customer": {"durations": {"extract_seconds": 1.5, "classify_seconds": 0.2, "load_seconds": 0.1}},
        "order": {"durations": {"extract_seconds": 0.5, "classify_seconds": 0.4, "load_seconds": 2.5}},
    }
    assert progress.slowest_stage(entities) == ("load", "order", 2.5)
    assert progress.slowest_stage({}) is None
