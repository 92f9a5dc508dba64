"""Classification: the five classes of docs/design.md ("Classification"), computed column-wise over a chunk.

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
INVALID = "invalid"  # failed a blocking check before it could be classified
REPORTED_CLASSES = (*CLASSES, INVALID)
_NULL = "\x00"


@dataclass
class Classification:
    result: pd.DataFrame  # index key: class, write, overdue, conflict, source_hash, target_hash
    desired: pd.DataFrame  # index key: the synced fields as the target should hold them
    audit: pd.DataFrame  # key, field, overwritten_value, restored_value (class overwritten)
    target: pd.DataFrame  # index key: the synced fields as the target holds them (null where absent)

    def changes(self, keys: list[str]) -> pd.DataFrame:
        """Every value a write of ``keys`` replaces in the target, as ``audit`` rows (a reprocess audits all)."""
        present = self.result.index.isin(keys) & (self.result["class"] != MISSING).to_numpy()
        rows = self.result.index[present]
        return _changed(self.target.loc[rows], self.desired.loc[rows])


def row_hash(frame: pd.DataFrame) -> pd.Series:
    """A stable 64-bit content hash per row over the given canonical text columns, as decimal text."""
    if frame.shape[1] == 0:
        return pd.Series("0", index=frame.index, dtype=object)
    text = frame.astype(object).where(frame.notna(), _NULL)  # canonical text: str objects hash as they are
    hashed = pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64)
    return pd.Series(hashed.astype(str), index=frame.index, dtype=object)


def _equal(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    return (a == b) | (a.isna() & b.isna())


def side_hash(frame: pd.DataFrame, shared: list[str]) -> pd.Series:
    """``<owned hash>:<shared hash>``: one side's synced fields as the ledger remembers them.

    Owned and shared fields are hashed apart: who moved on an owned field decides the class,
    who moved on a shared field decides which value a shared field keeps.
    """
    owned = [f for f in frame.columns if f not in shared]
    return row_hash(frame[owned]) + ":" + row_hash(frame[shared])


@dataclass
class _Moves:
    """Who changed what since the ledger entry (all False where there is none)."""

    known: pd.Series
    source_owned: pd.Series
    source_shared: pd.Series
    target_owned: pd.Series
    target_shared: pd.Series


def _halves(hashes: pd.Series) -> tuple[pd.Series, pd.Series]:
    parts = [h.partition(":") if isinstance(h, str) else ("", "", "") for h in hashes]
    owned = pd.Series([p[0] for p in parts], index=hashes.index, dtype=object)
    return owned, pd.Series([p[2] for p in parts], index=hashes.index, dtype=object)


def _moves(source_hash: pd.Series, target_hash: pd.Series, entry: pd.DataFrame) -> _Moves:
    known = entry["source_hash"].notna()
    (seen_owned, seen_shared), (wrote_owned, wrote_shared) = (
        _halves(entry["source_hash"]),
        _halves(entry["target_hash"]),
    )
    (s_owned, s_shared), (t_owned, t_shared) = _halves(source_hash), _halves(target_hash)
    return _Moves(
        known,
        known & (s_owned != seen_owned),
        known & (s_shared != seen_shared),
        known & (t_owned != wrote_owned),
        known & (t_shared != wrote_shared),
    )


def classify(
    source: pd.DataFrame,
    source_ts: pd.Series,
    target: pd.DataFrame,
    target_ts: pd.Series,
    ledger: pd.DataFrame,
    shared: list[str],
    overdue_before: datetime,
) -> Classification:
    """Classify every source record against its target match and ledger entry.

    ``ledger`` holds ``source_hash``/``target_hash`` as written by :func:`side_hash`; pass
    only entries made with the current mapping version (others are first contact).
    """
    fields = list(source.columns)
    present = pd.Series(source.index.isin(target.index), index=source.index)
    t = target.reindex(source.index)[fields]
    t_ts = target_ts.reindex(source.index)
    s_ts = source_ts.reindex(source.index)
    source_hash = side_hash(source, shared)
    moved = _moves(source_hash, side_hash(t, shared), ledger.reindex(source.index))

    desired, conflict = _resolve_shared(source, t, s_ts, t_ts, present, shared, moved)
    same = _equal(desired, t).all(axis=1) & present
    s_changed = moved.source_owned | moved.source_shared
    classes = np.select(
        [
            ~present,
            same,
            moved.target_owned,
            s_changed,
            moved.known,
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
            "target_hash": side_hash(desired, shared),
        },
        index=source.index,
    )
    return Classification(result, desired, _audit(t, desired, result, shared), t)


def _resolve_shared(
    source: pd.DataFrame,
    t: pd.DataFrame,
    s_ts: pd.Series,
    t_ts: pd.Series,
    present: pd.Series,
    shared: list[str],
    moved: _Moves,
) -> tuple[pd.DataFrame, pd.Series]:
    """Shared fields: the side that changed since the last sync wins.

    When both changed, or on first contact, the newer change time wins, and equal times with
    different values are a conflict for the exception queue. When neither changed, the last
    decision stands: the target holds it, so a source value that lost to a newer target value
    once does not win when the same record is read again. truesync's own writes never count
    as a target change, because the ledger remembers what it wrote.
    """
    desired = source.copy()
    conflict = pd.Series([None] * len(source), index=source.index, dtype=object)
    by_time = present & (~moved.known | (moved.source_shared & moved.target_shared))
    target_wins = present & ((moved.known & ~moved.source_shared) | (by_time & (t_ts > s_ts)))
    tie = by_time & (t_ts == s_ts)
    for field in shared:
        desired[field] = desired[field].where(~target_wins, t[field])
        clash = tie & ~_equal(source[[field]], t[[field]])[field] & conflict.isna()
        conflict[clash] = field
    return desired, conflict


def _audit(t: pd.DataFrame, desired: pd.DataFrame, result: pd.DataFrame, shared: list[str]) -> pd.DataFrame:
    """Values an ``overwritten`` record held on owned fields before truesync restored them."""
    rows = result.index[result["class"] == OVERWRITTEN]
    owned = [f for f in t.columns if f not in shared]
    return _changed(t.loc[rows, owned], desired.loc[rows, owned])


def _changed(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """One row per key and field whose value differs: the value before, and the one written over it."""
    if before.empty or before.shape[1] == 0:
        return pd.DataFrame(columns=["key", "field", "overwritten_value", "restored_value"])
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
