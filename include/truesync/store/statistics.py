"""Planner statistics of the store's bulk-written tables, on PostgreSQL (``docs/design.md``, "Planner statistics").

PostgreSQL plans a query from the statistics ``ANALYZE`` gathers. Its autovacuum daemon runs
``ANALYZE`` in the background once a table's rows changed by more than 50 plus 10% of the
rows it last counted: seconds to a minute after a bulk write, and never on a server that runs
without autovacuum. Until then a table truesync has just filled has no statistics, and the
planner takes the run and entity of a lookup to match one row: it reads every row of the
entity and filters the keys, where it should look the keys up.

The rule: a step that bulk-writes a table which later steps look up by key (the ledger, the
results) calls ``refresh`` with the number of rows it changed, after its commit. On
PostgreSQL the table is analyzed at once when that number passes autovacuum's default
threshold, 50 plus 10% of the rows the statistics know of (``pg_class.reltuples``; none
before the first ``ANALYZE``). The rule counts one write at a time: a table that grows by a
little each run is left to autovacuum, and the planner scales what it knows by the table's
size meanwhile. On a SQLite store it does nothing: SQLite plans these lookups by their indexes.
"""

from __future__ import annotations

from sqlalchemy import Table, text

from truesync.store.core import Store

ANALYZE_THRESHOLD, ANALYZE_SCALE = 50, 0.1  # autovacuum_analyze_threshold, autovacuum_analyze_scale_factor


def refresh(store: Store, table: Table, changed: int) -> bool:
    """Analyze ``table`` on PostgreSQL when the ``changed`` rows of one write pass the threshold of the
    module docstring; returns whether it did.
    """
    if store.engine.dialect.name != "postgresql" or changed <= ANALYZE_THRESHOLD:
        return False
    with store.engine.begin() as conn:
        name = conn.dialect.identifier_preparer.format_table(table)
        known = conn.execute(text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"), {"name": name})
        if changed <= ANALYZE_THRESHOLD + ANALYZE_SCALE * max(known.scalar() or 0, 0):
            return False
        conn.exec_driver_sql(f"ANALYZE {name}")
    return True
