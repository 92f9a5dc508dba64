"""What a full compare decides per key from the source, the target and the ledger (``core.compare.judge``).

Each case is one key; the table of docs/design.md ("Full compare") written as data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import pytest

from truesync.core.compare import DELETE, FORGET, KEEP, PAGE_COLUMNS, REPORT, SYNC, judge

VERSION = "shop@1->crm@1"
WATERMARK = datetime(2026, 11, 10)
OLD, SYNCED, NEW = datetime(2026, 11, 1), datetime(2026, 11, 5), datetime(2026, 11, 12)


def side(prefix: str, hash_: str | None, ts: datetime | None) -> dict[str, Any]:
    return {f"{prefix}_seen": 1, f"{prefix}_hash": hash_, f"{prefix}_ts": ts}


def entry(source: str, target: str, source_ts: datetime = SYNCED, target_ts: datetime = SYNCED, version: str = VERSION):
    return {"l_source_hash": source, "l_target_hash": target, "l_source_ts": source_ts, "l_target_ts": target_ts,
            "l_version": version}  # fmt: skip


def decide(**records: dict[str, Any]) -> pd.DataFrame:
    page = pd.DataFrame.from_dict(records, orient="index").reindex(columns=list(PAGE_COLUMNS))
    return judge(page.astype(object).where(page.notna(), None), VERSION, WATERMARK)


@pytest.mark.parametrize(
    ("record", "action", "flag", "expected"),
    [
        pytest.param({**side("s", "a", SYNCED), **side("t", "a", SYNCED), **entry("a", "a")}, KEEP, None, None,
                     id="in sync (the store counts these and refreshes their ledger: test_compare_store.py)"),
        pytest.param({**side("s", "a", SYNCED), **side("t", "a", NEW), **entry("b", "b", version="old")}, KEEP, None,
                     None, id="in sync whatever the ledger says"),
        pytest.param({**side("s", "b", NEW), **side("t", "a", SYNCED), **entry("a", "a")}, SYNC, "quiet_source",
                     False, id="source moved after the watermark: an increment will see it"),
        pytest.param({**side("s", "b", SYNCED), **side("t", "a", SYNCED), **entry("a", "a", source_ts=SYNCED)},
                     SYNC, "quiet_source", True, id="source edit that kept its change time: quiet"),
        pytest.param({**side("s", "b", SYNCED), **side("t", "a", OLD), **entry("a", "a", source_ts=OLD)}, SYNC,
                     "quiet_source", True, id="source change before the watermark that no increment saw: quiet"),
        pytest.param({**side("s", "a", SYNCED), **side("t", "x", NEW), **entry("a", "a")}, SYNC, "quiet_target",
                     False, id="target edit that moved its change time"),
        pytest.param({**side("s", "a", SYNCED), **side("t", "x", SYNCED), **entry("a", "a")}, SYNC, "quiet_target",
                     True, id="target edit that kept its change time: quiet"),
        pytest.param({**side("s", "a", SYNCED), **side("t", "x", None), **entry("a", "a")}, SYNC, "quiet_target",
                     True, id="target without a change time: quiet"),
        pytest.param({**side("s", "a", SYNCED), **side("t", "x", NEW)}, SYNC, "quiet_target", True,
                     id="no ledger: nothing tells whether the target moved, quiet"),
        pytest.param({**side("s", "a", OLD)}, SYNC, "quiet_source", True,
                     id="never synced, change time before the watermark: quiet missing"),
        pytest.param({**side("s", "a", NEW)}, SYNC, "quiet_source", False, id="new since the watermark: not quiet"),
        pytest.param({**side("s", "a", NEW), **entry("a", "a")}, SYNC, "quiet_source", True,
                     id="deleted in the target: quiet missing"),
        pytest.param({**side("s", None, NEW), **side("t", "a", SYNCED), **entry("a", "a")}, SYNC, "quiet_source",
                     False, id="unreadable source record: compared again"),
        pytest.param({**side("t", "a", SYNCED), **entry("a", "a")}, DELETE, None, None, id="deleted at the source"),
        pytest.param({**side("t", "a", SYNCED), **entry("a", "a", version="old")}, DELETE, None, None,
                     id="deleted at the source, synced under another mapping"),
        pytest.param({**side("t", "a", SYNCED)}, REPORT, None, None, id="only in the target"),
        pytest.param({**entry("a", "a")}, FORGET, None, None, id="gone from both: the entry is forgotten"),
    ],
)  # fmt: skip
def test_each_case_of_the_table(record: dict[str, Any], action: str, flag: str | None, expected: bool | None) -> None:
    verdict = decide(K1=record).loc["K1"]
    assert verdict["action"] == action
    if flag is not None:
        assert verdict[flag] == expected


def test_a_page_is_judged_key_by_key_in_one_pass() -> None:
    verdict = decide(
        A={**side("s", "a", SYNCED), **side("t", "a", SYNCED), **entry("a", "a")},
        B={**side("t", "b", SYNCED)},
        C={**side("s", "c", NEW)},
    )
    assert verdict["action"].to_dict() == {"A": KEEP, "B": REPORT, "C": SYNC}


def test_without_a_watermark_nothing_is_quiet_for_the_source_by_time_alone() -> None:
    page = pd.DataFrame.from_dict({"K": side("s", "a", OLD)}, orient="index").reindex(columns=list(PAGE_COLUMNS))
    assert not judge(page, VERSION, None).loc["K", "quiet_source"]
