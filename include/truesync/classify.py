"""Classification: the five classes of DESIGN.md, computed column-wise over a chunk.

Inputs are canonical text frames indexed by key: the source records ``S``, the matched
target records ``T`` and the ledger entries ``L``. The output says, per key, the class,
the record the target should hold (owned fields from the source; shared fields from
whichever side changed last), whether a write is needed, the overdue flag, and a
conflict where a shared field differs with equal timestamps (the exception queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

IN_SYNC, MISSING, DELAYED, OVERWRITTEN, MISMATCHED = (
    "in_sync",
    "missing",
    "delayed",
    "overwritten",
    "mismatched",
)
CLASSES = (IN_SYNC, MISSING, DELAYED, OVERWRITTEN, MISMATCHED)
_NULL = "\x00"


@dataclass
class Classification:
    result: pd.DataFrame  # index key: class, write, overdue, conflict, source_hash, target_hash
    desired: pd.DataFrame  # index key: the synced fields as the target should hold them
    audit: pd.DataFrame  # key, field, overwritten_value, restored_value (class overwritten)


def row_hash(frame: pd.DataFrame) -> pd.Series:
    """A stable 64-bit content hash per row over the given canonical text columns, as decimal text."""
    if frame.shape[1] == 0:
        return pd.Series("0", index=frame.index, dtype=object)
    text = frame.astype(object).where(frame.notna(), _NULL).astype(str)
    hashed = pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64)
    return pd.Series(hashed.astype(str), index=frame.index, dtype=object)


def _equal(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    return (a == b) | (a.isna() & b.isna())


def classify(
    source: pd.DataFrame,
    source_ts: pd.Series,
    target: pd.DataFrame,
    target_ts: pd.Series,
    ledger: pd.DataFrame,
    shared: list[str],
    overdue_before: datetime,
) -> Classification:
    """Classify every source record against its target match and ledger entry."""
    fields = list(source.columns)
    present = pd.Series(source.index.isin(target.index), index=source.index)
    t = target.reindex(source.index)[fields]
    t_ts = target_ts.reindex(source.index)
    s_ts = source_ts.reindex(source.index)

    desired, conflict = _resolve_shared(source, t, s_ts, t_ts, present, shared)
    same = _equal(desired, t).all(axis=1) & present

    source_hash = row_hash(source)
    target_hash = row_hash(t)
    entry = ledger.reindex(source.index)
    known = entry["source_hash"].notna()
    s_changed = source_hash != entry["source_hash"]
    t_changed = target_hash != entry["target_hash"]

    classes = np.select(
        [
            ~present,
            same,
            known & t_changed,
            known & s_changed,
            known,
            s_ts > t_ts,
            t_ts > s_ts,
        ],
        [MISSING, IN_SYNC, OVERWRITTEN, DELAYED, MISMATCHED, DELAYED, OVERWRITTEN],
        default=MISMATCHED,
    )
    result = pd.DataFrame(
        {
            "class": classes,
            "write": ~same,
            "overdue": np.isin(classes, [MISSING, DELAYED]) & (s_ts < pd.Timestamp(overdue_before)).to_numpy(),
            "conflict": conflict,
            "source_hash": source_hash,
            "target_hash": row_hash(desired),
        },
        index=source.index,
    )
    return Classification(result, desired, _audit(t, desired, result))


def _resolve_shared(
    source: pd.DataFrame,
    t: pd.DataFrame,
    s_ts: pd.Series,
    t_ts: pd.Series,
    present: pd.Series,
    shared: list[str],
) -> tuple[pd.DataFrame, pd.Series]:
    """Shared fields: the newest side wins; equal timestamps and different values conflict."""
    desired = source.copy()
    conflict = pd.Series([None] * len(source), index=source.index, dtype=object)
    target_newer = present & (t_ts > s_ts)
    tie = present & (t_ts == s_ts)
    for field in shared:
        desired[field] = desired[field].where(~target_newer, t[field])
        clash = tie & ~_equal(source[[field]], t[[field]])[field] & conflict.isna()
        conflict[clash] = field
    return desired, conflict


def _audit(t: pd.DataFrame, desired: pd.DataFrame, result: pd.DataFrame) -> pd.DataFrame:
    """Values an ``overwritten`` record held on owned fields before truesync restored them."""
    rows = result.index[result["class"] == OVERWRITTEN]
    if len(rows) == 0:
        return pd.DataFrame(columns=["key", "field", "overwritten_value", "restored_value"])
    before, after = t.loc[rows], desired.loc[rows]
    differs = ~_equal(before, after)
    stacked = differs.stack()
    stacked = stacked[stacked]
    keys = stacked.index.get_level_values(0)
    fields = stacked.index.get_level_values(1)
    return pd.DataFrame(
        {
            "key": keys,
            "field": fields,
            "overwritten_value": [before.at[k, f] for k, f in zip(keys, fields, strict=True)],
            "restored_value": [after.at[k, f] for k, f in zip(keys, fields, strict=True)],
        }
    )
