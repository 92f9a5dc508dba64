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
    """A stable 64-bit content hash per row over the given canonical text columns, as decimal text.

    Not categorized first: the hashes are the same, and most columns (amounts, comments) hold
    few repeats, so factorizing them costs more than it saves.
    """
    if frame.shape[1] == 0:
        return pd.Series("0", index=frame.index, dtype=object)
    text = frame.astype(object).where(frame.notna(), _NULL)  # canonical text: str objects hash as they are
    hashed = pd.util.hash_pandas_object(text, index=False, categorize=False).to_numpy(dtype=np.uint64)
    return pd.Series(hashed.astype(str), index=frame.index, dtype=object)


def _equal(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    return (a == b) | (a.isna() & b.isna())


def side_hash(frame: pd.DataFrame, shared: list[str]) -> pd.Series:
    """``<owned hash>:<shared hash>``: one side's synced fields as the ledger remembers them.

    Owned and shared fields are hashed apart: who moved on an owned field decides the class,
    who moved on a shared field decides which value a shared field keeps.
    """
    return _joined(_side_halves(frame, shared))


def _side_halves(frame: pd.DataFrame, shared: list[str]) -> tuple[pd.Series, pd.Series]:
    """The owned and the shared half of ``side_hash``, apart."""
    owned = [f for f in frame.columns if f not in shared]
    return row_hash(frame[owned]), row_hash(frame[shared])


def _joined(halves: tuple[pd.Series, pd.Series]) -> pd.Series:
    return halves[0] + ":" + halves[1]


@dataclass
class _Moves:
    """Who changed what since the ledger entry (all False where there is none)."""

    known: pd.Series
    source_owned: pd.Series
    source_shared: pd.Series
    target_owned: pd.Series
    target_shared: pd.Series


@dataclass
class Echoes:
    """What truesync last left on each side where a record's shared fields live: ledger
    entries (``key``, ``source_hash``, ``target_hash``, ``source_ts``) of every flow writing
    there (``Config.writers_into``, ``docs/design.md``, "Echoes").
    """

    source: pd.DataFrame
    target: pd.DataFrame


def origin_ts(hashes: pd.Series, ts: pd.Series, written: pd.DataFrame) -> pd.Series:
    """When each record's shared values changed, as far as the ledger can tell.

    A side holding the shared values a flow carried there from its source (``written``: the
    entry's source and target agree on them) did not change them when they were written:
    they date from the source's change, the earliest among the entries that carried exactly
    these values. An entry whose target kept its own newer values carried nothing. Elsewhere
    the record's own change time stands.
    """
    if written.empty:
        return ts
    entries = written.reset_index(drop=True)
    carried = _halves(entries["target_hash"])[1]
    echoed = (carried == _halves(entries["source_hash"])[1]) & (
        carried == _halves(hashes)[1].reindex(entries["key"]).to_numpy()
    )
    times = pd.to_datetime(entries["source_ts"])[echoed.to_numpy()]
    origin = times.groupby(entries["key"][echoed.to_numpy()].to_numpy()).min().reindex(ts.index)
    return ts.where(origin.isna() | (ts <= origin), origin)


def _halves(hashes: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A ``side_hash`` text split into its halves; no hash (no ledger entry) splits into two blanks."""
    if hashes.isna().all():
        blanks = pd.Series("", index=hashes.index, dtype=object)
        return blanks, blanks
    parts = [h.partition(":") if isinstance(h, str) else ("", "", "") for h in hashes]
    owned = pd.Series([p[0] for p in parts], index=hashes.index, dtype=object)
    return owned, pd.Series([p[2] for p in parts], index=hashes.index, dtype=object)


def _moves(source: tuple[pd.Series, pd.Series], target: tuple[pd.Series, pd.Series], entry: pd.DataFrame) -> _Moves:
    """Who moved since ``entry``, from each side's hash halves (``_side_halves``) now."""
    known = entry["source_hash"].notna()
    (seen_owned, seen_shared), (wrote_owned, wrote_shared) = (
        _halves(entry["source_hash"]),
        _halves(entry["target_hash"]),
    )
    (s_owned, s_shared), (t_owned, t_shared) = source, target
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
    echoes: Echoes | None = None,
) -> Classification:
    """Classify every source record against its target match and ledger entry.

    ``ledger`` holds ``source_hash``/``target_hash`` as written by :func:`side_hash`; pass
    only entries made with the current mapping version (others are first contact).
    ``echoes``: where shared values are ones truesync wrote, they are as old as the change
    it carried (:func:`origin_ts`), not as new as the write; change times are compared so.
    """
    fields = list(source.columns)
    present = pd.Series(source.index.isin(target.index), index=source.index)
    t = target.reindex(source.index)[fields]
    t_ts = target_ts.reindex(source.index)
    s_ts = source_ts.reindex(source.index)
    source_halves, target_halves = _side_halves(source, shared), _side_halves(t, shared)
    source_hash = _joined(source_halves)
    moved = _moves(source_halves, target_halves, ledger.reindex(source.index))
    s_when, t_when = s_ts, t_ts
    if echoes is not None:
        s_when = origin_ts(source_hash, s_ts, echoes.source)
        t_when = origin_ts(_joined(target_halves), t_ts, echoes.target)

    desired, conflict = _resolve_shared(source, t, s_when, t_when, present, shared, moved)
    same = _equal(desired, t).all(axis=1) & present
    s_changed = moved.source_owned | moved.source_shared
    classes = np.select(
        [
            ~present,
            same,
            moved.target_owned,
            s_changed,
            moved.known,
            s_when > t_when,
            t_when > s_when,
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
            "target_hash": side_hash(desired, shared) if shared else source_hash,  # owned: as the source
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
    """One row per key and field whose value differs, in key then field order: the value before,
    and the one written over it. Picked by position from whole arrays, not cell by cell.
    """
    if before.empty or before.shape[1] == 0:
        return pd.DataFrame(columns=["key", "field", "overwritten_value", "restored_value"])
    rows, columns = np.nonzero(~_equal(before, after).to_numpy())  # row-major: each key's fields together
    return pd.DataFrame(
        {
            "key": before.index.to_numpy(dtype=object)[rows],
            "field": before.columns.to_numpy(dtype=object)[columns],
            "overwritten_value": before.to_numpy(dtype=object)[rows, columns],
            "restored_value": after[before.columns].to_numpy(dtype=object)[rows, columns],
        }
    )
