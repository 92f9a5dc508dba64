"""Full compare: the kind of a run, its new classes and outcomes, quiet flags, the keys it scanned.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

_COUNTS = ("deleted", "target_only", "removed", "soft_deleted", "reported", "quiet")


def _scratch() -> list[str]:
    """A run's scratch tables, emptied when it ends, write no WAL on PostgreSQL."""
    return ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []


def upgrade() -> None:
    op.add_column("ts_run", sa.Column("kind", sa.String(20), nullable=False, server_default="sync"))
    for name in _COUNTS:
        op.add_column("ts_run_entity", sa.Column(name, sa.Integer, nullable=False, server_default="0"))
    op.add_column("ts_result", sa.Column("quiet", sa.Boolean))
    op.create_table(
        "ts_compare_key",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("side", sa.String(1), primary_key=True),
        sa.Column("hash", sa.String(64)),
        sa.Column("ts", sa.DateTime),
        prefixes=_scratch(),
    )
    op.create_table(
        "ts_compare_diff",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("quiet_source", sa.Boolean, nullable=False),
        sa.Column("quiet_target", sa.Boolean, nullable=False),
        sa.Column("known", sa.Boolean, nullable=False),
        prefixes=_scratch(),
    )


def downgrade() -> None:
    op.drop_table("ts_compare_diff")
    op.drop_table("ts_compare_key")
    op.drop_column("ts_result", "quiet")
    for name in reversed(_COUNTS):
        op.drop_column("ts_run_entity", name)
    op.drop_column("ts_run", "kind")
