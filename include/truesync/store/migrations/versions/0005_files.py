"""File systems: the ledger of the files each flow read, per entity and run.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "ts_file",
        sa.Column("flow", sa.String(100), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("modified", sa.DateTime),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("latest", sa.DateTime),
        sa.Column("unkeyed", sa.Integer, nullable=False),
        sa.Column("read_until", sa.DateTime, nullable=False),
        sa.Column("committed", sa.Boolean, nullable=False),
        sa.Column("read_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ts_file")
