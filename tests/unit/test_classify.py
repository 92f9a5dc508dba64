"""Classification of source records against target and ledger (docs/design.md, "Classification")."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from truesync.core.classify import CLASSES, Classification, Echoes, classify, origin_ts, row_hash, side_hash

FIELDS = ["email", "tier"]
T0 = pd.Timestamp("2026-10-01 10:00:00")
EARLIER = T0 - pd.Timedelta(hours=1)
LATER = T0 + pd.Timedelta(hours=1)
# Far in the past: nothing is overdue unless a test says otherwise.
NEVER_OVERDUE = datetime(2000, 1, 1)

Row = dict[str, object]


def frame(rows: dict[str, Row], fields: list[str] = FIELDS) -> pd.DataFrame:
    """Canonical text records indexed by key."""
    out = pd.DataFrame([[row.get(f) for f in fields] for row in rows.values()], index=list(rows), columns=fields)
    return out.astype(object)


def stamps(values: dict[str, object]) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values.values())), index=list(values), dtype="datetime64[ns]")


def ledger_of(
    seen: dict[str, Row], written: dict[str, Row], fields: list[str] = FIELDS, shared: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Ledger entries as the last sync left them: hashes of what it saw and what it wrote."""
    assert list(seen) == list(written)
    return pd.DataFrame(
        {
            "source_hash": side_hash(frame(seen, fields), list(shared)),
            "target_hash": side_hash(frame(written, fields), list(shared)),
        },
        index=list(seen),
    )


def no_ledger() -> pd.DataFrame:
    return pd.DataFrame({"source_hash": pd.Series(dtype=object), "target_hash": pd.Series(dtype=object)})


def run(
    source: dict[str, Row],
    source_ts: dict[str, object],
    target: dict[str, Row],
    target_ts: dict[str, object],
    ledger: pd.DataFrame | None = None,
    shared: list[str] | None = None,
    overdue_before: datetime = NEVER_OVERDUE,
    fields: list[str] = FIELDS,
    echoes: Echoes | None = None,
) -> Classification:
    return classify(
        frame(source, fields),
        stamps(source_ts),
        frame(target, fields),
        stamps(target_ts),
        no_ledger() if ledger is None else ledger,
        shared or [],
        overdue_before,
        echoes,
    )


def klass(verdict: Classification, key: str = "k1") -> str:
    return verdict.result.at[key, "class"]


OLD = {"email": "old@example.com", "tier": "gold"}
NEW = {"email": "new@example.com", "tier": "gold"}
OTHER = {"email": "other@example.com", "tier": "gold"}


# ---------------------------------------------------------------- in_sync


@pytest.mark.parametrize(("s_ts", "t_ts"), [(T0, T0), (LATER, EARLIER), (EARLIER, LATER), (None, None)])
def test_equal_records_are_in_sync_whatever_the_timestamps(s_ts: object, t_ts: object) -> None:
    verdict = run({"k1": NEW}, {"k1": s_ts}, {"k1": NEW}, {"k1": t_ts})
    assert klass(verdict) == "in_sync"
    assert not verdict.result.at["k1", "write"]
    assert verdict.audit.empty


def test_equal_records_are_in_sync_even_when_the_ledger_says_both_moved() -> None:
    ledger = ledger_of({"k1": OLD}, {"k1": OTHER})
    verdict = run({"k1": NEW}, {"k1": LATER}, {"k1": NEW}, {"k1": EARLIER}, ledger)
    assert klass(verdict) == "in_sync"
    assert not verdict.result.at["k1", "write"]


def test_null_equals_null_and_nan_equals_none() -> None:
    source = {"k1": {"email": "a@x", "tier": None}, "k2": {"email": "b@x", "tier": None}}
    target = frame({"k1": {"email": "a@x", "tier": None}, "k2": {"email": "b@x"}})
    target.loc["k2", "tier"] = np.nan
    verdict = classify(
        frame(source), stamps({"k1": T0, "k2": T0}), target, stamps({"k1": T0, "k2": T0}), no_ledger(), [], T0
    )
    assert list(verdict.result["class"]) == ["in_sync", "in_sync"]
    assert not verdict.result["write"].any()


@pytest.mark.parametrize("target_value", ["", "None", "nan", "\x00"])
def test_null_differs_from_empty_and_from_text_that_looks_null(target_value: str) -> None:
    verdict = run(
        {"k1": {"email": "a@x", "tier": None}},
        {"k1": LATER},
        {"k1": {"email": "a@x", "tier": target_value}},
        {"k1": T0},
    )
    assert klass(verdict) == "delayed"
    assert verdict.result.at["k1", "write"]
    assert verdict.desired.at["k1", "tier"] is None


# ---------------------------------------------------------------- missing


def test_no_target_row_is_missing() -> None:
    verdict = run({"k1": NEW, "k2": NEW}, {"k1": T0, "k2": T0}, {"k2": NEW}, {"k2": T0})
    assert klass(verdict, "k1") == "missing"
    assert verdict.result.at["k1", "write"]
    assert klass(verdict, "k2") == "in_sync"
    assert verdict.desired.loc["k1"].to_dict() == NEW


def test_missing_wins_over_a_ledger_entry() -> None:
    """A target row deleted after a sync is missing again, not overwritten."""
    ledger = ledger_of({"k1": NEW}, {"k1": NEW})
    verdict = run({"k1": NEW}, {"k1": T0}, {}, {}, ledger)
    assert klass(verdict) == "missing"
    assert verdict.result.at["k1", "conflict"] is None


# ---------------------------------------------------------------- delayed


def test_delayed_with_ledger_when_only_the_source_moved() -> None:
    ledger = ledger_of({"k1": OLD}, {"k1": OLD})
    # The target's timestamp is newer: the ledger, not the clock, decides.
    verdict = run({"k1": NEW}, {"k1": EARLIER}, {"k1": OLD}, {"k1": LATER}, ledger)
    assert klass(verdict) == "delayed"
    assert verdict.result.at["k1", "write"]
    assert verdict.desired.loc["k1"].to_dict() == NEW
    assert verdict.audit.empty


def test_first_contact_source_newer_is_delayed() -> None:
    verdict = run({"k1": NEW}, {"k1": LATER}, {"k1": OLD}, {"k1": EARLIER})
    assert klass(verdict) == "delayed"
    assert verdict.desired.loc["k1"].to_dict() == NEW


# ---------------------------------------------------------------- overwritten


def test_overwritten_with_ledger_when_the_target_moved_on_an_owned_field() -> None:
    ledger = ledger_of({"k1": NEW}, {"k1": NEW})
    # The source's timestamp is newer: the ledger, not the clock, decides.
    verdict = run({"k1": NEW}, {"k1": LATER}, {"k1": OTHER}, {"k1": EARLIER}, ledger)
    assert klass(verdict) == "overwritten"
    assert verdict.result.at["k1", "write"]
    assert verdict.desired.loc["k1"].to_dict() == NEW
    audit = verdict.audit.to_dict("records")
    assert audit == [
        {"key": "k1", "field": "email", "overwritten_value": OTHER["email"], "restored_value": NEW["email"]}
    ]


def test_overwritten_when_both_sides_moved() -> None:
    ledger = ledger_of({"k1": OLD}, {"k1": OLD})
    verdict = run({"k1": NEW}, {"k1": LATER}, {"k1": OTHER}, {"k1": EARLIER}, ledger)
    assert klass(verdict) == "overwritten"
    assert verdict.desired.loc["k1"].to_dict() == NEW


def test_first_contact_target_newer_is_overwritten_with_audit() -> None:
    target = {"email": "other@example.com", "tier": "silver"}
    verdict = run({"k1": NEW}, {"k1": EARLIER}, {"k1": target}, {"k1": LATER})
    assert klass(verdict) == "overwritten"
    assert verdict.desired.loc["k1"].to_dict() == NEW
    audit = verdict.audit.sort_values("field").to_dict("records")
    assert audit == [
        {"key": "k1", "field": "email", "overwritten_value": "other@example.com", "restored_value": NEW["email"]},
        {"key": "k1", "field": "tier", "overwritten_value": "silver", "restored_value": "gold"},
    ]


def test_audit_lists_only_overwritten_records() -> None:
    ledger = ledger_of({"k1": NEW, "k2": OLD}, {"k1": NEW, "k2": OLD})
    verdict = run(
        {"k1": NEW, "k2": NEW},
        {"k1": T0, "k2": T0},
        {"k1": OTHER, "k2": OLD},
        {"k1": T0, "k2": T0},
        ledger,
    )
    assert klass(verdict, "k1") == "overwritten"
    assert klass(verdict, "k2") == "delayed"
    assert list(verdict.audit["key"]) == ["k1"]
    assert list(verdict.audit.columns) == ["key", "field", "overwritten_value", "restored_value"]


def test_audit_and_changes_pair_each_key_with_its_own_values_in_key_then_field_order() -> None:
    """Values are picked by position from whole arrays: a shifted row or column would pair a key
    with another record's values."""
    sources = {"k1": {"email": "a@new", "tier": "gold"}, "k2": NEW, "k3": {"email": "c@new", "tier": "silver"}}
    targets = {"k1": {"email": "a@old", "tier": "bronze"}, "k2": NEW, "k3": {"email": "c@old", "tier": "silver"}}
    keys = list(sources)
    verdict = run(sources, dict.fromkeys(keys, EARLIER), targets, dict.fromkeys(keys, LATER))
    assert [klass(verdict, k) for k in keys] == ["overwritten", "in_sync", "overwritten"]
    expected = [
        {"key": "k1", "field": "email", "overwritten_value": "a@old", "restored_value": "a@new"},
        {"key": "k1", "field": "tier", "overwritten_value": "bronze", "restored_value": "gold"},
        {"key": "k3", "field": "email", "overwritten_value": "c@old", "restored_value": "c@new"},
    ]
    assert verdict.audit.to_dict("records") == expected
    assert verdict.changes(["k3", "k2", "k1"]).to_dict("records") == expected


def test_audit_records_a_value_overwritten_with_null() -> None:
    ledger = ledger_of({"k1": NEW}, {"k1": NEW})
    verdict = run({"k1": NEW}, {"k1": T0}, {"k1": {"email": None, "tier": "gold"}}, {"k1": T0}, ledger)
    assert klass(verdict) == "overwritten"
    [row] = verdict.audit.to_dict("records")
    assert row["field"] == "email"
    assert pd.isna(row["overwritten_value"])
    assert row["restored_value"] == NEW["email"]


# ---------------------------------------------------------------- mismatched


def test_mismatched_with_ledger_when_neither_side_moved() -> None:
    ledger = ledger_of({"k1": NEW}, {"k1": OTHER})
    # Timestamps would say "delayed": with a ledger entry they do not count.
    verdict = run({"k1": NEW}, {"k1": LATER}, {"k1": OTHER}, {"k1": EARLIER}, ledger)
    assert klass(verdict) == "mismatched"
    assert verdict.result.at["k1", "write"]
    assert verdict.desired.loc["k1"].to_dict() == NEW


@pytest.mark.parametrize(("s_ts", "t_ts"), [(T0, T0), (None, T0), (T0, None), (None, None)])
def test_first_contact_without_usable_timestamps_is_mismatched(s_ts: object, t_ts: object) -> None:
    verdict = run({"k1": NEW}, {"k1": s_ts}, {"k1": OLD}, {"k1": t_ts})
    assert klass(verdict) == "mismatched"
    assert verdict.result.at["k1", "write"]


def test_every_class_in_one_chunk() -> None:
    source = {"sync": NEW, "miss": NEW, "late": NEW, "over": NEW, "odd": NEW}
    target = {"sync": NEW, "late": OLD, "over": OTHER, "odd": OTHER}
    ledger = ledger_of(
        {"sync": NEW, "miss": NEW, "late": OLD, "over": NEW, "odd": NEW},
        {"sync": NEW, "miss": NEW, "late": OLD, "over": NEW, "odd": OTHER},
    )
    s_ts = dict.fromkeys(source, T0)
    t_ts = dict.fromkeys(target, T0)
    verdict = run(source, s_ts, target, t_ts, ledger)
    assert verdict.result["class"].to_dict() == {
        "sync": "in_sync",
        "miss": "missing",
        "late": "delayed",
        "over": "overwritten",
        "odd": "mismatched",
    }
    assert set(verdict.result["class"]) == set(CLASSES)
    # write is false exactly for in_sync
    assert verdict.result["write"].to_dict() == {"sync": False, "miss": True, "late": True, "over": True, "odd": True}
    assert list(verdict.result.index) == list(source)
    assert list(verdict.desired.index) == list(source)


def test_first_contact_and_ledger_keys_mix_in_one_chunk() -> None:
    ledger = ledger_of({"known": OLD}, {"known": OLD})
    verdict = run(
        {"known": NEW, "fresh": NEW},
        {"known": EARLIER, "fresh": EARLIER},
        {"known": OLD, "fresh": OLD},
        {"known": LATER, "fresh": LATER},
        ledger,
    )
    assert klass(verdict, "known") == "delayed"  # ledger: only the source moved
    assert klass(verdict, "fresh") == "overwritten"  # first contact: the target is newer


# ---------------------------------------------------------------- the ledger round trip


def test_result_hashes_as_ledger_make_the_next_run_in_sync_then_detect_who_moved() -> None:
    first = run({"k1": NEW}, {"k1": T0}, {}, {})
    assert klass(first) == "missing"
    ledger = first.result[["source_hash", "target_hash"]]
    assert ledger.at["k1", "source_hash"] == side_hash(frame({"k1": NEW}), []).at["k1"]
    assert ledger.at["k1", "target_hash"] == side_hash(first.desired, []).at["k1"]
    written = {"k1": first.desired.loc["k1"].to_dict()}

    again = run({"k1": NEW}, {"k1": T0}, written, {"k1": T0}, ledger)
    assert klass(again) == "in_sync"
    assert not again.result.at["k1", "write"]

    edited_target = run({"k1": NEW}, {"k1": LATER}, {"k1": OTHER}, {"k1": T0}, ledger)
    assert klass(edited_target) == "overwritten"

    edited_source = run({"k1": OTHER}, {"k1": EARLIER}, written, {"k1": LATER}, ledger)
    assert klass(edited_source) == "delayed"


# ---------------------------------------------------------------- shared fields


def test_shared_field_target_newer_keeps_the_target_value() -> None:
    source = {"email": "new@example.com", "tier": "gold"}
    target = {"email": "old@example.com", "tier": "silver"}
    verdict = run({"k1": source}, {"k1": EARLIER}, {"k1": target}, {"k1": LATER}, shared=["tier"])
    assert verdict.desired.loc["k1"].to_dict() == {"email": "new@example.com", "tier": "silver"}
    assert verdict.result.at["k1", "conflict"] is None
    assert verdict.result.at["k1", "write"]
    # the shared value the target keeps is not an overwrite to restore
    assert list(verdict.audit["field"]) == ["email"]


def test_shared_field_source_newer_takes_the_source_value() -> None:
    source = {"email": "a@x", "tier": "gold"}
    target = {"email": "a@x", "tier": "silver"}
    verdict = run({"k1": source}, {"k1": LATER}, {"k1": target}, {"k1": EARLIER}, shared=["tier"])
    assert verdict.desired.loc["k1"].to_dict() == source
    assert klass(verdict) == "delayed"
    assert verdict.result.at["k1", "conflict"] is None


def test_shared_field_target_newer_and_only_shared_differs_needs_no_write() -> None:
    verdict = run(
        {"k1": {"email": "a@x", "tier": "gold"}},
        {"k1": EARLIER},
        {"k1": {"email": "a@x", "tier": "silver"}},
        {"k1": LATER},
        shared=["tier"],
    )
    assert verdict.desired.at["k1", "tier"] == "silver"
    assert not verdict.result.at["k1", "write"]


def test_owned_field_is_not_taken_from_a_newer_target() -> None:
    """Without ``shared`` the same record restores the source's value."""
    verdict = run(
        {"k1": {"email": "a@x", "tier": "gold"}},
        {"k1": EARLIER},
        {"k1": {"email": "a@x", "tier": "silver"}},
        {"k1": LATER},
    )
    assert verdict.desired.at["k1", "tier"] == "gold"
    assert klass(verdict) == "overwritten"


def test_shared_field_both_changed_with_ledger_newest_source_wins() -> None:
    seen = {"k1": {"email": "a@x", "tier": "bronze"}}
    verdict = run(
        {"k1": {"email": "a@x", "tier": "gold"}},
        {"k1": LATER},
        {"k1": {"email": "a@x", "tier": "silver"}},
        {"k1": EARLIER},
        ledger_of(seen, seen, shared=("tier",)),
        shared=["tier"],
    )
    # The target moved on a shared field only: no owned field was overwritten, the source moved.
    assert klass(verdict) == "delayed"
    assert verdict.desired.at["k1", "tier"] == "gold"
    assert verdict.audit.empty


def test_shared_field_changed_only_in_the_source_wins_over_truesyncs_own_later_write() -> None:
    """The target's change time is truesync's own write: it must not beat a real source change."""
    seen = {"k1": {"email": "a@x", "tier": "bronze"}}
    verdict = run(
        {"k1": {"email": "a@x", "tier": "gold"}},
        {"k1": EARLIER},
        {"k1": {"email": "a@x", "tier": "bronze"}},
        {"k1": LATER},
        ledger_of(seen, seen, shared=("tier",)),
        shared=["tier"],
    )
    assert klass(verdict) == "delayed"
    assert verdict.desired.at["k1", "tier"] == "gold"


def test_shared_field_changed_only_in_the_target_is_kept_even_when_older() -> None:
    seen = {"k1": {"email": "a@x", "tier": "bronze"}}
    verdict = run(
        {"k1": {"email": "b@x", "tier": "bronze"}},
        {"k1": LATER},
        {"k1": {"email": "a@x", "tier": "silver"}},
        {"k1": EARLIER},
        ledger_of(seen, seen, shared=("tier",)),
        shared=["tier"],
    )
    assert klass(verdict) == "delayed", "the source moved an owned field; the target only a shared one"
    assert verdict.desired.at["k1", "tier"] == "silver"
    assert verdict.desired.at["k1", "email"] == "b@x"
    assert verdict.audit.empty


def test_a_shared_value_that_lost_to_a_newer_target_value_does_not_win_when_read_again() -> None:
    """The late note: the target's newer value won the last sync; the same source record read again
    (a rerun, the lookback) finds nothing moved, so the target's value stands and nothing is written."""
    source, target = {"email": "a@x", "tier": "gold"}, {"email": "a@x", "tier": "silver"}
    first = run({"k1": source}, {"k1": EARLIER}, {"k1": target}, {"k1": LATER}, shared=["tier"])
    assert (klass(first), first.desired.at["k1", "tier"]) == ("in_sync", "silver")
    ledger = ledger_of({"k1": source}, {"k1": target}, shared=("tier",))
    again = run({"k1": source}, {"k1": EARLIER}, {"k1": target}, {"k1": LATER}, ledger, shared=["tier"])
    assert (klass(again), again.desired.at["k1", "tier"]) == ("in_sync", "silver")
    assert not again.result.at["k1", "write"]


def test_shared_field_tie_is_a_conflict_naming_the_field() -> None:
    verdict = run(
        {"k1": {"email": "a@x", "tier": "gold"}, "k2": {"email": "b@x", "tier": "gold"}},
        {"k1": T0, "k2": T0},
        {"k1": {"email": "a@x", "tier": "silver"}, "k2": {"email": "c@x", "tier": "gold"}},
        {"k1": T0, "k2": T0},
        shared=["tier"],
    )
    assert verdict.result.at["k1", "conflict"] == "tier"
    # an owned field that differs on a tie is no shared-field conflict
    assert verdict.result.at["k2", "conflict"] is None


def test_shared_tie_with_ledger_is_a_conflict() -> None:
    seen = {"k1": {"email": "a@x", "tier": "bronze"}}
    verdict = run(
        {"k1": {"email": "a@x", "tier": "gold"}},
        {"k1": T0},
        {"k1": {"email": "a@x", "tier": "silver"}},
        {"k1": T0},
        ledger_of(seen, seen, shared=("tier",)),
        shared=["tier"],
    )
    assert verdict.result.at["k1", "conflict"] == "tier"


def test_conflict_names_the_first_differing_shared_field() -> None:
    fields = ["email", "tier", "segment"]
    verdict = run(
        {"k1": {"email": "a@x", "tier": "gold", "segment": "retail"}},
        {"k1": T0},
        {"k1": {"email": "a@x", "tier": "gold", "segment": "b2b"}},
        {"k1": T0},
        shared=["tier", "segment"],
        fields=fields,
    )
    assert verdict.result.at["k1", "conflict"] == "segment"


def test_shared_tie_with_equal_values_and_shared_nulls_is_no_conflict() -> None:
    verdict = run(
        {"k1": {"email": "a@x", "tier": None}},
        {"k1": T0},
        {"k1": {"email": "b@x", "tier": None}},
        {"k1": T0},
        shared=["tier"],
    )
    assert verdict.result.at["k1", "conflict"] is None


def test_no_conflict_for_a_missing_target() -> None:
    verdict = run({"k1": NEW}, {"k1": T0}, {}, {}, shared=["tier"])
    assert klass(verdict) == "missing"
    assert verdict.result.at["k1", "conflict"] is None
    assert verdict.desired.loc["k1"].to_dict() == NEW


# ---------------------------------------------------------------- overdue


def test_overdue_only_for_missing_and_delayed_older_than_the_cutoff() -> None:
    cutoff = datetime(2026, 10, 1, 10, 0)
    old, fresh = pd.Timestamp("2026-10-01 04:00"), pd.Timestamp("2026-10-01 12:00")
    ledger = ledger_of(
        {"sync": NEW, "late_old": OLD, "late_new": OLD, "over_old": NEW, "odd_old": NEW},
        {"sync": NEW, "late_old": OLD, "late_new": OLD, "over_old": NEW, "odd_old": OTHER},
    )
    source = {
        "sync": NEW,
        "miss_old": NEW,
        "miss_new": NEW,
        "late_old": NEW,
        "late_new": NEW,
        "over_old": NEW,
        "odd_old": NEW,
    }
    s_ts = {k: (fresh if k.endswith("_new") else old) for k in source}
    target = {"sync": NEW, "late_old": OLD, "late_new": OLD, "over_old": OTHER, "odd_old": OTHER}
    verdict = run(source, s_ts, target, dict.fromkeys(target, old), ledger, overdue_before=cutoff)
    assert verdict.result["class"].to_dict() == {
        "sync": "in_sync",
        "miss_old": "missing",
        "miss_new": "missing",
        "late_old": "delayed",
        "late_new": "delayed",
        "over_old": "overwritten",
        "odd_old": "mismatched",
    }
    assert verdict.result["overdue"].to_dict() == {
        "sync": False,
        "miss_old": True,
        "miss_new": False,
        "late_old": True,
        "late_new": False,
        "over_old": False,
        "odd_old": False,
    }


def test_overdue_cutoff_is_strict() -> None:
    verdict = run({"k1": NEW}, {"k1": T0}, {}, {}, overdue_before=T0.to_pydatetime())
    assert not verdict.result.at["k1", "overdue"]
    verdict = run({"k1": NEW}, {"k1": T0}, {}, {}, overdue_before=(T0 + pd.Timedelta(seconds=1)).to_pydatetime())
    assert verdict.result.at["k1", "overdue"]


# ---------------------------------------------------------------- row_hash


def test_row_hash_same_values_same_hash() -> None:
    a = frame({"k1": NEW, "k2": {"email": None, "tier": "gold"}})
    b = frame({"x": {"email": None, "tier": "gold"}, "y": NEW})
    ha, hb = row_hash(a), row_hash(b)
    assert ha.at["k1"] == hb.at["y"]
    assert ha.at["k2"] == hb.at["x"]
    assert list(ha.index) == ["k1", "k2"]
    assert all(h.isdigit() and 0 <= int(h) < 2**64 for h in ha)


@pytest.mark.parametrize(
    "other",
    [
        {"email": "new@example.com", "tier": "silver"},
        {"email": "new@example.com ", "tier": "gold"},
        {"email": "NEW@example.com", "tier": "gold"},
        {"email": "gold", "tier": "new@example.com"},
        {"email": None, "tier": "gold"},
        {"email": "", "tier": "gold"},
        {"email": "None", "tier": "gold"},
        {"email": "nan", "tier": "gold"},
    ],
)
def test_row_hash_different_values_different_hash(other: Row) -> None:
    hashes = row_hash(frame({"a": NEW, "b": other}))
    assert hashes.at["a"] != hashes.at["b"]


def test_row_hash_treats_nan_and_none_alike() -> None:
    a = frame({"k1": {"email": None, "tier": "gold"}})
    b = a.copy()
    b.loc["k1", "email"] = np.nan
    assert row_hash(a).at["k1"] == row_hash(b).at["k1"]


def test_row_hash_does_not_depend_on_the_other_rows_of_the_chunk() -> None:
    alone = row_hash(frame({"k1": NEW})).at["k1"]
    crowd = row_hash(frame({"k0": OLD, "k1": NEW, "k2": OTHER})).at["k1"]
    assert alone == crowd


def test_row_hash_of_no_columns() -> None:
    empty = pd.DataFrame(index=["a", "b"])
    assert list(row_hash(empty)) == ["0", "0"]


def test_row_hash_is_stable_across_processes() -> None:
    """The ledger outlives the process: the hash must not depend on Python's hash seed."""
    code = (
        "import pandas as pd; from truesync.core.classify import row_hash; "
        "print(row_hash(pd.DataFrame({'a': ['x', None], 'b': ['12.50', 'y']}, index=['k1', 'k2'])).tolist())"
    )
    seen = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        seen.add(out.stdout.strip())
    here = str(row_hash(pd.DataFrame({"a": ["x", None], "b": ["12.50", "y"]}, index=["k1", "k2"])).tolist())
    assert seen == {here}


def test_row_hash_is_stable_across_releases() -> None:
    """A ledger written by an earlier release must still match: these values were hashed by one."""
    rows = pd.DataFrame({"a": ["x", None, "x"], "b": ["12.50", "y", "12.50"]}, index=["k1", "k2", "k3"])
    assert row_hash(rows).tolist() == ["3976948791474002302", "1605847635980678343", "3976948791474002302"]


# ---------------------------------------------------------------- echoes: values truesync wrote

WRITE_TIME = T0 + pd.Timedelta(days=1)  # truesync's write, later than every change below


def wrote(
    entries: list[tuple[str, Row, object]], shared: list[str], kept: Row | None = None, fields: list[str] = FIELDS
) -> pd.DataFrame:
    """Ledger entries of other flows: the key, the record they left in their target, the source's
    change time; the source held the same record, or ``kept`` when the target kept its own values."""

    def hashed(key: str, row: Row) -> str:
        return side_hash(frame({key: row}, fields), shared).iloc[0]

    return pd.DataFrame(
        {
            "key": [key for key, _, _ in entries],
            "source_hash": [hashed(key, kept or row) for key, row, _ in entries],
            "target_hash": [hashed(key, row) for key, row, _ in entries],
            "source_ts": pd.to_datetime([ts for _, _, ts in entries]),
        }
    )


NOBODY = wrote([], ["tier"])


def test_a_value_truesync_wrote_into_the_target_dates_from_the_change_it_carried() -> None:
    """The echo: another flow wrote 'silver' (changed at EARLIER) into the target at WRITE_TIME; the
    source changed to 'gold' at T0. By the write time the target would win; by the ledger the source does."""
    source, target = {"email": "a@x", "tier": "gold"}, {"email": "a@x", "tier": "silver"}
    blind = run({"k1": source}, {"k1": T0}, {"k1": target}, {"k1": WRITE_TIME}, shared=["tier"])
    assert blind.desired.at["k1", "tier"] == "silver"
    echoes = Echoes(NOBODY, wrote([("k1", target, EARLIER)], ["tier"]))
    verdict = run({"k1": source}, {"k1": T0}, {"k1": target}, {"k1": WRITE_TIME}, shared=["tier"], echoes=echoes)
    assert (klass(verdict), verdict.desired.at["k1", "tier"]) == ("delayed", "gold")


def test_a_value_truesync_wrote_into_the_source_is_not_a_new_change_there() -> None:
    """A flow back (CRM -> shop) reads the CRM value the shop's flow wrote: it must not beat the
    shop's own newer edit, though the CRM's record changed later."""
    source, target = {"email": "a@x", "tier": "silver"}, {"email": "a@x", "tier": "gold"}
    echoes = Echoes(wrote([("k1", source, EARLIER)], ["tier"]), NOBODY)
    verdict = run({"k1": source}, {"k1": WRITE_TIME}, {"k1": target}, {"k1": T0}, shared=["tier"], echoes=echoes)
    assert (klass(verdict), verdict.desired.at["k1", "tier"]) == ("in_sync", "gold")
    assert not verdict.result.at["k1", "write"]


def test_a_value_typed_after_truesyncs_write_keeps_its_own_time() -> None:
    """The target holds another value than truesync wrote there: a person's edit, as new as its record."""
    source, target = {"email": "a@x", "tier": "gold"}, {"email": "a@x", "tier": "silver"}
    echoes = Echoes(NOBODY, wrote([("k1", {"email": "a@x", "tier": "bronze"}, EARLIER)], ["tier"]))
    verdict = run({"k1": source}, {"k1": T0}, {"k1": target}, {"k1": WRITE_TIME}, shared=["tier"], echoes=echoes)
    assert verdict.desired.at["k1", "tier"] == "silver"


def test_a_value_a_flow_found_and_kept_in_its_target_was_not_carried_by_it() -> None:
    """The shop's flow met the CRM's newer 'silver' and kept it (its source had 'gold', changed at
    EARLIER): that entry dates nothing, so the CRM's 'silver' keeps its own time going back."""
    source, target = {"email": "a@x", "tier": "silver"}, {"email": "a@x", "tier": "gold"}
    kept = wrote([("k1", source, EARLIER)], ["tier"], kept={"email": "a@x", "tier": "gold"})
    verdict = run(
        {"k1": source}, {"k1": T0}, {"k1": target}, {"k1": EARLIER}, shared=["tier"], echoes=Echoes(kept, NOBODY)
    )
    assert (klass(verdict), verdict.desired.at["k1", "tier"]) == ("delayed", "silver")


def test_two_echoes_of_one_change_at_the_same_instant_are_a_tie() -> None:
    source, target = {"email": "a@x", "tier": "gold"}, {"email": "a@x", "tier": "silver"}
    echoes = Echoes(NOBODY, wrote([("k1", target, T0)], ["tier"]))
    verdict = run({"k1": source}, {"k1": T0}, {"k1": target}, {"k1": WRITE_TIME}, shared=["tier"], echoes=echoes)
    assert verdict.result.at["k1", "conflict"] == "tier"


def test_origin_is_the_earliest_change_among_the_flows_that_wrote_the_value() -> None:
    hashes = side_hash(frame({"k1": OLD, "k2": NEW, "k3": OLD}), ["email"])
    ts = stamps({"k1": WRITE_TIME, "k2": WRITE_TIME, "k3": None})
    entries = wrote(
        [("k1", OLD, LATER), ("k1", OLD, EARLIER), ("k1", NEW, T0), ("k2", OLD, T0), ("k3", OLD, T0)], ["email"]
    )
    origin = origin_ts(hashes, ts, entries)
    assert origin.to_dict() == {"k1": EARLIER, "k2": WRITE_TIME, "k3": T0}, "k2 holds what nobody wrote"
    assert origin_ts(hashes, ts, NOBODY).equals(ts)
