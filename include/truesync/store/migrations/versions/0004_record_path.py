"""The path of one record: a record's results and overwritten values found by flow, entity and key.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_index("ix_ts_result_record", "ts_result", ["entity", "key"])
    op.create_index("ix_ts_audit_record", "ts_audit", ["flow", "entity", "key"])


def downgrade() -> None:
    op.drop_index("ix_ts_audit_record", "ts_audit")
    op.drop_index("ix_ts_result_record", "ts_result")
