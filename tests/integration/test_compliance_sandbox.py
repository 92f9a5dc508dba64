"""Consent and inspection statuses, and assets' inspections, owned by a compliance system, shown and edited in the CRM.

The sandbox's compliance system (``sandbox.compliance``) feeds the CRM's contacts and assets on SQLite,
PostgreSQL or MariaDB (beside PostgreSQL the store is on PostgreSQL too). The statuses are the
compliance system's: a CRM edit is overwritten and kept in the audit trail. The notes are
shared: a late update carrying an older change time never replaces a newer note in the CRM,
and equal change times with different notes wait in the queue. ``labels.csv`` is the ground
truth of the first runs over the demo days.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_demo import Demo, assert_conserved, open_demo
from shared_setup import put_on_server

from truesync.sandbox import DEMO_DAYS
from truesync.sandbox.compliance import ASSET_ENTITY, ENTITY, FLOW, UNKNOWN_ASSET, UNKNOWN_CUSTOMER
from truesync.sandbox.groundtruth import differences, drift, first_results, held_keys
from truesync.store import history, staging

EDITED_IN_CRM = "(edited in the CRM)"


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def crm(request: pytest.FixtureRequest, state: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """The sandbox at scale 200, the CRM on the database of the parameter, after the demo days."""
    put_on_server(request, monkeypatch, "crm")
    handle = open_demo(state)
    handle.before = _contacts(handle)  # type: ignore[attr-defined]
    handle.assets_before = _assets(handle)  # type: ignore[attr-defined]
    handle.reports = [handle.run(FLOW, day) for day in range(DEMO_DAYS)]  # type: ignore[attr-defined]
    yield handle
    handle.close()


def test_statuses_stay_the_compliance_systems_and_the_newer_note_wins(crm: Demo) -> None:
    """One sandbox per database for the checks that only read it."""
    labels = crm.labels()
    labels = labels[labels["flow"] == FLOW]
    for entity in (ENTITY, ASSET_ENTITY):
        classes = set(labels.loc[labels["entity"] == entity, "class"])
        assert {"in_sync", "delayed", "overwritten", "mismatched", "missing", "invalid"} <= classes, entity
    wrong = differences(labels, first_results(crm.store, FLOW))
    assert wrong.empty, f"differs from the ground truth:\n{wrong.to_string()}"
    for report in crm.reports:  # type: ignore[attr-defined]
        assert_conserved(crm, report)
    for entity in (ENTITY, ASSET_ENTITY):
        assert drift(crm.config, FLOW, entity) <= held_keys(crm.store, FLOW, entity)
    statuses, inspections = (labels[labels["entity"] == entity] for entity in (ENTITY, ASSET_ENTITY))
    _overwritten_statuses_are_restored_and_audited(crm, statuses)
    _a_late_older_note_never_replaces_a_newer_one(crm)
    _ties_and_strangers_wait(crm, statuses)
    _inspections_are_the_compliance_systems_on_the_crms_assets(crm, inspections)


def _overwritten_statuses_are_restored_and_audited(crm: Demo, labels: object) -> None:
    contacts, source = _contacts(crm), crm.by_key("compliance", "consents", "customer_ref")
    overwritten = labels[labels["class"] == "overwritten"]["key"].tolist()  # type: ignore[index]
    assert overwritten
    for key in overwritten:
        assert contacts[key]["consent"] != crm.before[key]["consent"], "the CRM's edit is gone"  # type: ignore[attr-defined]
        codes = {"G": "granted", "W": "withdrawn", "P": "pending"}
        assert contacts[key]["consent"] == codes[source[key]["consent_code"]]
        (audited,) = history.overwrites(crm.store, FLOW, ENTITY, key)
        assert (audited["field"], audited["overwritten_value"]) == ("consent", crm.before[key]["consent"])  # type: ignore[attr-defined]
        assert audited["restored_value"] == contacts[key]["consent"]
        restored = staging.run_results(crm.store, audited["run_id"], ENTITY).set_index("key")
        assert tuple(restored.loc[key, ["class", "outcome"]]) == ("overwritten", "updated"), "the run that restored it"


def _a_late_older_note_never_replaces_a_newer_one(crm: Demo) -> None:
    before = crm.before  # type: ignore[attr-defined]
    contacts, source = _contacts(crm), crm.by_key("compliance", "consents", "customer_ref")
    late = [k for k, c in before.items() if (c["compliance_notes"] or "").endswith(EDITED_IN_CRM)
            and c["modified_at"] > source[k]["changed_at"]]  # fmt: skip
    assert late
    for key in late:
        assert source[key]["notes"] != before[key]["compliance_notes"]
        assert contacts[key]["compliance_notes"] == before[key]["compliance_notes"], "the CRM's newer note stays"


def _ties_and_strangers_wait(crm: Demo, labels: object) -> None:
    ties = labels[labels["check"] == "shared_field_tie"]["key"].tolist()  # type: ignore[index]
    assert ties
    for key in ties:
        held = crm.exception(FLOW, ENTITY, key)
        assert held["field"] == "notes"
        assert held["reason"] == "shared field 'notes' changed on both sides at the same time"
        assert _contacts(crm)[key] == crm.before[key]  # type: ignore[attr-defined]
    stranger = crm.exception(FLOW, ENTITY, UNKNOWN_CUSTOMER)
    assert stranger["check_name"] == "parent_exists" and f"customer '{UNKNOWN_CUSTOMER}'" in stranger["reason"]
    assert UNKNOWN_CUSTOMER not in _contacts(crm), "no contact made of a status"


def _inspections_are_the_compliance_systems_on_the_crms_assets(crm: Demo, labels: Any) -> None:
    """An asset's result is restored and audited, a new asset is made at its contact, a newer CRM note stays,
    and an asset of a customer nobody has waits for its contact."""
    before, after = crm.assets_before, _assets(crm)  # type: ignore[attr-defined]
    source = crm.by_key("compliance", "inspections", "asset_tag")
    results = {"OK": "passed", "NOK": "failed", "DUE": "due"}
    overwritten = labels.loc[labels["class"] == "overwritten", "key"].tolist()
    assert overwritten
    for tag in overwritten:
        assert after[tag]["inspection"] == results[source[tag]["result_code"]] != before[tag]["inspection"]
        (audited,) = history.overwrites(crm.store, FLOW, ASSET_ENTITY, tag)
        assert (audited["field"], audited["overwritten_value"]) == ("result", before[tag]["inspection"])
    created = labels.loc[(labels["class"] == "missing") & (labels["check"] == ""), "key"].tolist()
    assert created and not set(created) & set(before)
    for tag in created:
        want = (source[tag]["customer_ref"], results[source[tag]["result_code"]])
        assert (after[tag]["contact_ref"], after[tag]["inspection"]) == want
    late = [t for t, a in before.items() if (a["inspection_notes"] or "").endswith(EDITED_IN_CRM)
            and a["modified_at"] > source[t]["changed_at"]]  # fmt: skip
    assert late and all(after[t]["inspection_notes"] == before[t]["inspection_notes"] for t in late)
    stranger = crm.exception(FLOW, ASSET_ENTITY, UNKNOWN_ASSET)
    assert stranger["check_name"] == "parent_exists" and f"customer '{UNKNOWN_CUSTOMER}'" in stranger["reason"]
    assert UNKNOWN_ASSET not in after, "no asset made for a customer the CRM lacks"


def _contacts(crm: Demo) -> dict[str, dict[str, Any]]:
    return crm.by_key("crm", "contacts", "external_id")


def _assets(crm: Demo) -> dict[str, dict[str, Any]]:
    return crm.by_key("crm", "assets", "asset_tag")


def test_a_rerun_writes_nothing(crm: Demo) -> None:
    before = crm.snapshot("crm")
    for day in range(DEMO_DAYS):
        totals = crm.run(FLOW, day, tag="again")["totals"]
        assert (totals["created"], totals["updated"]) == (0, 0), totals
    assert crm.snapshot("crm") == before
