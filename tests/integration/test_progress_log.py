"""What a run writes to its log (``truesync.pipeline.progress``): each task's story, no personal data, no secret.

In Airflow these lines are the task logs (``tests/airflow/test_airflow_e2e.py`` reads them back);
here the engine runs in-process and pytest's ``caplog`` collects them, and ``truesync run``
prints them on stderr.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from sandbox_demo import SHOP_FLOW, Demo
from sqlalchemy import select, update
from sqlalchemy.engine import URL

from truesync.cli import main as truesync
from truesync.core.classify import REPORTED_CLASSES
from truesync.reporting.report import OUTCOMES
from truesync.sandbox import systems as sandbox

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
UNREADABLE = "jane.doe@example"  # fails the email format (no top-level domain): its reason quotes it
PASSWORD = "s3cr3t-pw"


def data_emails(demo: Demo) -> set[str]:
    """Every e-mail address the sandbox holds, in the source and in the target."""
    found = {r["email_address"] for r in demo.rows("webshop", "customers")}
    found |= {r["email"] for r in demo.rows("crm", "contacts")}
    return {e for e in found if e and "@" in e}


def pairs(counts: dict[str, Any], names: tuple[str, ...]) -> str:
    return " ".join(f"{name}={counts[name]}" for name in names)


def test_a_run_logs_its_window_counts_and_held_reasons_masked(demo: Demo, caplog: pytest.LogCaptureFixture) -> None:
    window = demo.window(SHOP_FLOW, 0)
    customers = demo.table("webshop", "customers")
    with demo.engine("webshop").begin() as conn:
        key = conn.execute(
            select(customers.c.ext_id)
            .where(customers.c.updated_at >= window.start.isoformat(), customers.c.updated_at < window.end.isoformat())
            .where(customers.c.ext_id.is_not(None), customers.c.email_address.like("%@example.com"))
            .order_by(customers.c.ext_id)
            .limit(1)
        ).scalar_one()
        conn.execute(update(customers).where(customers.c.ext_id == key).values(email_address=UNREADABLE))
    emails = data_emails(demo)
    assert len(emails) > 100 and UNREADABLE in emails

    caplog.set_level(logging.INFO, logger="truesync")
    report = demo.run(SHOP_FLOW, 0)
    ours = [r for r in caplog.records if r.name.startswith("truesync.")]
    assert ours and all(r.name.startswith("truesync.pipeline.") for r in ours)
    assert {r.levelno for r in ours} <= {logging.INFO, logging.WARNING}
    text = "\n".join(r.getMessage() for r in ours)

    span = f"window {window.start.isoformat()}..{window.end.isoformat()}"
    for stage in ("run started: flow", "extract started: flow", "sync started: flow", "finalize started: flow"):
        assert any(line.startswith(stage) and span in line for line in text.splitlines()), stage
    for entity, body in report["entities"].items():
        assert f"entity {entity}, {span}, partition all" in text  # extract's start names the entity and window
        assert f"sync started: flow {SHOP_FLOW}, entity {entity}, {span}, partition p0000" in text
        assert f"extract {entity}: batch 1 (window) read" in text  # a line per batch read, with the running total
        assert re.search(rf"sync {entity} p0000: chunk 1: classified \d+ \(in_sync=\d+", text)
        assert (
            f"finalize {entity}: extracted {body['extracted']}; classes {pairs(body['classes'], REPORTED_CLASSES)}; "
            f"outcomes {pairs(body['outcomes'], OUTCOMES)}; overdue {body['overdue']}; "
            f"exceptions opened {body['exceptions']['opened']}, resolved {body['exceptions']['resolved']}"
        ) in text
    finished = next(line for line in text.splitlines() if line.startswith("finalize finished"))
    assert "success" in finished and "slowest stage " in finished and report["path"] in finished

    held = [line for line in text.splitlines() if line.startswith("held ")]
    assert any(line.startswith("held customer: ") and f"x {sandbox.REGEX} on email" in line for line in held), held
    assert any("parent_exists on customer_id" in line for line in held), held
    assert "found 'j***@e***'" in text, "the offending e-mail is shown masked"
    assert not [e for e in emails if e in text], "no e-mail address of the data in the log"
    assert not EMAIL.findall(text.replace("***@", "")), EMAIL.findall(text)


def test_truesync_run_prints_the_log_on_stderr_with_no_password(
    state: Path, postgres_url: URL, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CRM on PostgreSQL behind a URL with a password (trust authentication lets any password in)."""
    crm = postgres_url.set(password=PASSWORD).render_as_string(hide_password=False)
    monkeypatch.setenv("AIRFLOW_CONN_TRUESYNC_CRM", crm)
    assert truesync(["sandbox", "init", "--scale", "150"]) == 0
    capsys.readouterr()
    args = ["run", SHOP_FLOW, "--start", "2026-10-31T00:00:00", "--end", "2026-11-02T00:00:00"]
    assert truesync(args) == 0
    out, err = capsys.readouterr()
    assert "window [2026-10-31T00:00:00, 2026-11-02T00:00:00)" in out  # the report table stays on stdout
    assert "INFO truesync.pipeline.extract: extract started: flow webshop_to_crm, entity customer" in err
    assert "window 2026-10-31T00:00:00..2026-11-02T00:00:00" in err
    assert "INFO truesync.pipeline.finalize: finalize finished" in err and "held customer: " in err
    assert PASSWORD not in err + out and "@example.com" not in err

    assert truesync([*args, "--dry-run", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "dry run: nothing written" in out
    assert " INFO " not in err, "--quiet leaves out the progress lines"
