"""A compare's doubts: the keys its scans and the ledger cannot confirm in sync, with both sides'
readings and the key's ledger entry, written by one join so the rest of the compare reads only them.
A run's scratch, emptied when it ends: UNLOGGED on PostgreSQL, as ``ts_compare_key``.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    reading = [("seen", sa.Integer), ("hash", sa.String(64)), ("ts", sa.DateTime)]
    entry = [("source_hash", sa.String(64)), ("target_hash", sa.String(64)), ("source_ts", sa.DateTime)]
    entry += [("target_ts", sa.DateTime), ("version", sa.String(100))]
    op.create_table(
        "ts_compare_doubt",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        *(sa.Column(f"{side}_{name}", kind) for side in "st" for name, kind in reading),
        *(sa.Column(f"l_{name}", kind) for name, kind in entry),
        prefixes=["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else [],
    )


def downgrade() -> None:
    op.drop_table("ts_compare_doubt")
