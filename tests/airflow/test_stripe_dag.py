"""The Stripe example's flow through a real Airflow: localstripe as the gateway, the sandbox REST CRM as target.

Two runs triggered by hand, as a person would from the UI: the first is the full load (no
watermark yet), the second reads the lookback again and must write nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from stripe_server import SECRET_KEY, crm_writes, localstripe, next_second, sandbox_crm, scenario, stripe_config

from truesync.pipeline import dags
from truesync.sandbox.localairflow import LocalAirflow
from truesync.store import Store, runs, staging

FLOW = "stripe_to_crm_api"


def test_the_stripe_flow_runs_through_airflow_and_a_second_run_writes_nothing(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = dags.dag_id(FLOW)
    with sandbox_crm() as crm, localstripe(tmp_path) as stripe:
        stripe_config(tmp_path / "config", stripe.url, crm.url, monkeypatch)
        labels = scenario(stripe)
        next_second()
        airflow = LocalAirflow(state / "airflow")
        airflow.prepare([dag])
        airflow.trigger(dag, "manual__first")
        airflow.start()
        try:
            assert airflow.wait_for_run(dag, "manual__first") == "success"
            writes = crm_writes(crm)
            airflow.trigger(dag, "manual__again")
            assert airflow.wait_for_run(dag, "manual__again") == "success"
        finally:
            airflow.stop()
        assert crm_writes(crm) == writes, "the second run wrote to the CRM"

    store = Store()
    first = staging.run_results(store, f"{FLOW}:manual__first")
    assert {row.key: (row.entity, row["class"]) for _, row in first.iterrows()} == labels
    report = json.loads(runs.get(store, f"{FLOW}:manual__first")["report"])
    for entity, body in report["entities"].items():
        assert body["conserved"] is True and body["extracted"] == sum(body["outcomes"].values()), entity
    again = staging.run_results(store, f"{FLOW}:manual__again")
    assert Counter(again["class"]) == Counter("in_sync" if c in ("missing",) else c for _, c in labels.values()), (
        "the second run finds what the first wrote in sync, and holds what it held"
    )
    logs = "\n".join(p.read_text(errors="replace") for p in (state / "airflow" / "logs").rglob("*.log"))
    assert "extract started: flow stripe_to_crm_api, entity refund" in logs
    assert SECRET_KEY not in logs
