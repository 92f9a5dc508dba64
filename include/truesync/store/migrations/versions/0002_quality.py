"""Data quality: the offending value of a held record, per-run check statistics, records blocked again.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("ts_run_entity", sa.Column("blocked_again", sa.Integer, nullable=False, server_default="0"))
    op.add_column("ts_staging", sa.Column("value", sa.Text))
    op.add_column("ts_result", sa.Column("value", sa.Text))
    op.create_table(
        "ts_check",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("expectation", sa.String(200), nullable=False),
        sa.Column("column_name", sa.String(200)),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("kwargs", sa.Text, nullable=False),
        sa.Column("evaluated", sa.Integer, nullable=False),
        sa.Column("unexpected", sa.Integer, nullable=False),
        sa.Column("examples", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("observed", sa.Text),
    )
    op.create_index("ix_ts_check_run", "ts_check", ["run_id", "entity", "phase"])


def downgrade() -> None:
    op.drop_index("ix_ts_check_run", "ts_check")
    op.drop_table("ts_check")
    op.drop_column("ts_result", "value")
    op.drop_column("ts_staging", "value")
    op.drop_column("ts_run_entity", "blocked_again")
