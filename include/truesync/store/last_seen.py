"""The newest record of each watched group (a terminal, by a flow's ``quality.silence``), across runs.

A group's entry moves only forward in time: a late record older than the one remembered
changes nothing, so a terminal's last word is its newest event, whatever order files arrive in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from truesync.store.core import Store
from truesync.store.schema import last_seen
from truesync.support.bulk import select_by_keys, upsert, with_constants


def remember(store: Store, flow: str, entity: str, newest: pd.DataFrame, run_id: str) -> int:
    """Keep each group's newest record (``newest``: grp, value, at; one row a group); returns how many moved."""
    if newest.empty:
        return 0
    query = select(last_seen.c.grp, last_seen.c.at).where(last_seen.c.flow == flow, last_seen.c.entity == entity)
    with store.engine.begin() as conn:
        known = dict(select_by_keys(conn, query, last_seen.c.grp, list(newest["grp"])))
        later = [at > known[grp] if grp in known else True for grp, at in zip(newest["grp"], newest["at"], strict=True)]
        moved = newest[later]
        if not moved.empty:
            rows = with_constants(moved, flow=flow, entity=entity, run_id=run_id)
            upsert(conn, last_seen, rows, ("flow", "entity", "grp"), ("value", "at", "run_id"))
    return len(moved)


def silent(store: Store, flow: str, entity: str, values: list[str], before: datetime) -> list[dict[str, Any]]:
    """Groups whose newest record holds one of ``values`` and is older than ``before``, oldest first."""
    query = (
        select(last_seen.c.grp, last_seen.c.value, last_seen.c.at)
        .where(last_seen.c.flow == flow, last_seen.c.entity == entity)
        .where(last_seen.c.value.in_(values), last_seen.c.at < before)
        .order_by(last_seen.c.at, last_seen.c.grp)
    )
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
