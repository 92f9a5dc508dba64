"""Compare: what a full compare does with each key, from what each side and the ledger hold of it.

The input is one page of keys with, per key, the source side (``s_*``: seen, hash of the
synced fields, change time), the target side (``t_*``) and the ledger entry (``l_*``).
Hashes are :func:`truesync.core.classify.side_hash` values, so a source and a target that
agree on every synced field have equal hashes, and each side compares with what the
ledger remembers of it. The rules (``docs/design.md``, "Full compare"):

* both sides, equal hashes: ``in_sync``; kept (``KEEP``). The store refreshes their stale
  ledger entries itself (``store.compare.refresh_ledger``), and a page from
  ``store.compare.differences`` never holds one;
* both sides, different, or the source only: ``SYNC``: the source record is staged and the
  incremental classifier decides ``missing``, ``delayed``, ``overwritten`` or ``mismatched``;
* the target and the ledger, no source: ``deleted``, handled by the flow's delete policy;
* the target only, never synced: ``target_only``, reported and never touched;
* the ledger only: the record is gone from both sides, its entry is forgotten.

A difference is *quiet* when no change time shows it, so no incremental run would find it.
Two flags are kept per key because the classifier decides later which side moved:
``quiet_source`` (for ``missing``, ``delayed``, ``invalid``: the source's change time is before the
committed watermark, or did not move since the ledger, or the target row was deleted) and
``quiet_target`` (for ``overwritten``: the target's change time did not move since the ledger,
or there is no ledger or no target change time to tell). ``mismatched``, ``deleted`` and
``target_only`` are always quiet.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from truesync.core.classify import DELAYED, INVALID, MISMATCHED, MISSING

DELETED, TARGET_ONLY = "deleted", "target_only"
COMPARE_CLASSES = (DELETED, TARGET_ONLY)
KEEP, SYNC, DELETE, REPORT, FORGET = "keep", "sync", "delete", "report", "forget"
SOURCE_SIDE_CLASSES = (MISSING, DELAYED, INVALID)  # quiet when the source's change does not show
ALWAYS_QUIET = (MISMATCHED, DELETED, TARGET_ONLY)  # and overwritten by ``quiet_target``
PAGE_COLUMNS = (
    "s_seen", "s_hash", "s_ts", "t_seen", "t_hash", "t_ts",
    "l_source_hash", "l_target_hash", "l_source_ts", "l_target_ts", "l_version",
)  # fmt: skip


def judge(page: pd.DataFrame, version: str, watermark: datetime | None) -> pd.DataFrame:
    """Per key of ``page`` (indexed by key, ``PAGE_COLUMNS``): action and quiet flags.

    ``version`` is the flow's mapping version: a ledger entry made under another one still
    says the record was synced once, but its hashes are not compared (first contact).
    """
    s_seen, t_seen = _flag(page["s_seen"]), _flag(page["t_seen"])
    known = page["l_source_hash"].notna()
    current = known & (page["l_version"] == version)
    equal = s_seen & t_seen & page["s_hash"].notna() & (page["s_hash"] == page["t_hash"])
    action = np.select(
        [equal, s_seen, t_seen & known, t_seen],
        [KEEP, SYNC, DELETE, REPORT],
        default=FORGET,
    )
    s_ts, t_ts = _times(page["s_ts"]), _times(page["t_ts"])
    l_source_ts, l_target_ts = _times(page["l_source_ts"]), _times(page["l_target_ts"])
    before_watermark = s_ts < pd.Timestamp(watermark) if watermark is not None else pd.Series(False, index=page.index)
    source_unmoved = current & (page["s_hash"] != page["l_source_hash"]) & (s_ts <= l_source_ts)
    target_unmoved = ~current | t_ts.isna() | (t_ts <= l_target_ts)
    return pd.DataFrame(
        {
            "action": action,
            "quiet_source": (before_watermark | source_unmoved | (known & ~t_seen)).to_numpy(dtype=bool),
            "quiet_target": target_unmoved.to_numpy(dtype=bool),
        },
        index=page.index,
    )


def _flag(values: pd.Series) -> pd.Series:
    return values.fillna(0).astype(bool)


def _times(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, errors="coerce")
