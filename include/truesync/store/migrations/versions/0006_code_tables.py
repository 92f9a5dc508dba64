"""Code tables: the version each record was translated with, and each version's content when first used.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("ts_ledger", sa.Column("code_versions", sa.String(500)))
    op.add_column("ts_result", sa.Column("code_versions", sa.String(500)))
    op.create_table(
        "ts_code_table",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.String(100), primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("first_used", sa.DateTime, nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ts_code_table")
    op.drop_column("ts_result", "code_versions")
    op.drop_column("ts_ledger", "code_versions")
