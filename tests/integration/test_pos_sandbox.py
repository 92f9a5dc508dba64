"""The sandbox's point of sale, run by the engine over the demo days, then the files that come later.

The first runs classify every terminal event and store price as ``labels.csv`` says. Then
``truesync sandbox deliver`` drops a late file (events of the first day, stuck on a terminal)
and a rewritten one (a payment corrected to a cancelled order); the next run finds exactly what
``delivery_labels.csv`` says: the late events created (and overdue), the corrected event
updated, the rest of the rewritten file unchanged.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from truesync.cli import main as truesync
from truesync.config import load_config
from truesync.pipeline.runner import run_flow
from truesync.pipeline.window import Window
from truesync.sandbox import DEMO_DAYS, DEMO_START
from truesync.sandbox.groundtruth import differences, drift, first_results, held_keys
from truesync.store import Store, staging

FLOWS = ("pos_events_to_crm", "erp_to_pos")


def day_window(day: int) -> Window:
    start = datetime.combine(DEMO_START, datetime.min.time()) + timedelta(days=day)
    return Window(start - timedelta(hours=2), start + timedelta(days=1))


def test_the_point_of_sale_then_late_and_rewritten_deliveries(state: Path) -> None:
    assert truesync(["sandbox", "init", "--scale", "100"]) == 0
    config, store = load_config(), Store()
    reports = [
        run_flow(config, store, flow, f"{flow}:day{d}", day_window(d)) for d in range(DEMO_DAYS) for flow in FLOWS
    ]
    labels = pd.read_csv(state / "sandbox" / "labels.csv", keep_default_na=False)
    for flow in FLOWS:
        wrong = differences(labels[labels["flow"] == flow], first_results(store, flow))
        assert wrong.empty, f"{flow} differs from the ground truth:\n{wrong.to_string()}"
        entity = config.flows[flow].entities[0]
        assert drift(config, flow, entity) <= held_keys(store, flow, entity)  # every till price is the ERP's
    silent = [a for r in reports[-2:] for a in r["quality"]["alerts"] if a["kind"] == "silent"]
    assert [a["group"] for a in silent] == ["T04"]

    assert truesync(["sandbox", "deliver"]) == 0
    after = run_flow(config, store, "pos_events_to_crm", "pos_events_to_crm:after", day_window(DEMO_DAYS))
    expected = pd.read_csv(state / "sandbox" / "delivery_labels.csv", keep_default_na=False)
    found = staging.run_results(store, "pos_events_to_crm:after")
    found = found[found["key"].isin(set(expected["key"]))]
    assert len(found) == len(expected)
    wrong = differences(expected, found[["entity", "key", "class", "outcome", "overdue", "check_name"]])
    assert wrong.empty, f"the deliveries differ from the ground truth:\n{wrong.to_string()}"
    outcomes = after["entities"]["pos_event"]["outcomes"]
    assert (outcomes["created"], outcomes["updated"]) == (3, 1)  # the retried exceptions stay quarantined
