"""Silence alerts: the newest record of each watched group (a terminal), across runs.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "ts_last_seen",
        sa.Column("flow", sa.String(100), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("grp", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ts_last_seen")
