"""The exception queue as people work it: filtered pages, exports, and decisions recorded with
who made them and when (``docs/operating.md``, "The dashboard").

Decisions follow one rule table, the same from the dashboard and the shell:

=========  ================  =====================================
action     new status        applies to exceptions that are
=========  ================  =====================================
retry      ``retrying``      open or ignored (sent back to the next run)
resolve    ``resolved``      open, retrying or ignored
ignore     ``ignored``       open or retrying
=========  ================  =====================================

Any other exception in the selection is left as it is and counted by status, so repeating a
decision changes nothing and says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, true, update

from truesync.store.core import Store, row_pages, utcnow
from truesync.store.schema import exceptions

ACTIONS = {
    "retry": ("retrying", ("open", "ignored")),
    "resolve": ("resolved", ("open", "retrying", "ignored")),
    "ignore": ("ignored", ("open", "retrying")),
}
EXPORT_PAGE = 5000


@dataclass(frozen=True)
class Selection:
    """Which exceptions: those of the flows the caller may see (None: every flow, as for the shell),
    narrowed by any of the filters (None: any)."""

    flows: tuple[str, ...] | None
    flow: str | None = None
    entity: str | None = None
    klass: str | None = None
    check: str | None = None
    status: str | None = None
    older_than_days: int | None = None
    key: str | None = None  # a part of the key
    ids: tuple[int, ...] | None = None

    def where(self, now: datetime) -> ColumnElement[bool]:
        e = exceptions.c
        clauses = [] if self.flows is None else [e.flow.in_(self.flows)]
        for column, value in ((e.flow, self.flow), (e.entity, self.entity), (e["class"], self.klass),
                              (e.check_name, self.check), (e.status, self.status)):  # fmt: skip
            if value:
                clauses.append(column == value)
        if self.older_than_days is not None:
            clauses.append(e.first_seen < now - timedelta(days=self.older_than_days))
        if self.key:
            clauses.append(e.key.contains(self.key, autoescape=True))
        if self.ids is not None:
            clauses.append(e.id.in_(self.ids))
        return and_(true(), *clauses)


def page(store: Store, selection: Selection, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the selection, newest seen first, and how many it holds in all."""
    where = selection.where(utcnow())
    query = (
        select(exceptions)
        .where(where)
        .order_by(exceptions.c.last_seen.desc(), exceptions.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        total = int(conn.execute(select(func.count()).select_from(exceptions).where(where)).scalar() or 0)
    return rows, total


def every(store: Store, selection: Selection) -> Iterator[dict[str, Any]]:
    """Every exception of the selection, by id, read a page at a time (exports)."""
    query = select(exceptions).where(selection.where(utcnow()))  # id is the table's first column
    for rows in row_pages(store, query, exceptions.c.id, EXPORT_PAGE):
        yield from (dict(row._mapping) for row in rows)


def decide(store: Store, selection: Selection, action: str, note: str, by: str) -> dict[str, Any]:
    """Apply a decision to the selection by the rule table; returns what changed and what was left."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action '{action}'; actions: {', '.join(ACTIONS)}")
    if not note.strip():
        raise ValueError("a decision needs a reason")
    new_status, applies_to = ACTIONS[action]
    now = utcnow()
    where = selection.where(now)
    left_query = (
        select(exceptions.c.status, func.count().label("n"))
        .where(where, exceptions.c.status.not_in(applies_to))
        .group_by(exceptions.c.status)
    )
    stmt = (
        update(exceptions)
        .where(where, exceptions.c.status.in_(applies_to))
        .values(status=new_status, note=note, decided_by=by, decided_at=now)
    )
    with store.engine.begin() as conn:
        left = {r.status: int(r.n) for r in conn.execute(left_query)}
        changed = conn.execute(stmt).rowcount
    return {"action": action, "status": new_status, "changed": changed, "left": left}


def describe(outcome: dict[str, Any]) -> str:
    """A decision's outcome in one sentence: ``2 marked resolved; left as they were: 1 resolved``."""
    said = f"{outcome['changed']} marked {outcome['status']}"
    left = [f"{n} {status}" for status, n in sorted(outcome["left"].items())]
    return said + (f"; left as they were: {', '.join(left)}" if left else "")
