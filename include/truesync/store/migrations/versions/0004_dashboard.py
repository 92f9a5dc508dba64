"""The dashboard: who decided an exception and when; indexes for the status board, the queue's
filters and the path of one record (results and overwritten values by flow, entity and key).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

_INDEXES = (
    ("ix_ts_result_record", "ts_result", ["entity", "key"]),
    ("ix_ts_audit_record", "ts_audit", ["flow", "entity", "key"]),
    ("ix_ts_run_newest", "ts_run", ["flow", "kind", "started_at"]),
    ("ix_ts_exception_seen", "ts_exception", ["last_seen", "id"]),
)


def upgrade() -> None:
    op.add_column("ts_exception", sa.Column("decided_by", sa.String(250)))
    op.add_column("ts_exception", sa.Column("decided_at", sa.DateTime))
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table)
    op.drop_column("ts_exception", "decided_at")
    op.drop_column("ts_exception", "decided_by")
