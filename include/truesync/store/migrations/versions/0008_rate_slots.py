"""REST rate ceilings shared by every worker: the next free request slot of each system.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "ts_rate_slot",
        sa.Column("system", sa.String(100), primary_key=True),
        sa.Column("next_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ts_rate_slot")
