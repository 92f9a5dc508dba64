"""A compare's scanned keys go to tables of their own, one per entity and side, instead of ``ts_compare_key``.

Each table holds only its side's keys, so the join reads no other side, run or entity, and
its rows carry no run, entity or side. When the run ends its tables are dropped, not
deleted from row by row (``store.compare``, ``schema.scanned_keys``). The shared table goes;
it held nothing between compares. A downgrade makes it again, as revision 0009 left it,
and drops any scan table a run left behind.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"

_KEY = {"run_id": 250, "entity": 100, "key": 255, "side": 1}  # column and length, as 0009 made them


def upgrade() -> None:
    op.drop_table("ts_compare_key")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in sa.inspect(op.get_bind()).get_table_names():
        if name.startswith("ts_scan_"):
            op.drop_table(name)
    op.create_table(
        "ts_compare_key",
        *(sa.Column(name, sa.String(size), nullable=False) for name, size in _KEY.items()),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64)),
        sa.Column("ts", sa.DateTime),
        prefixes=["UNLOGGED"] if postgresql else [],
    )
    if not postgresql:
        op.create_index("ix_ts_compare_key", "ts_compare_key", list(_KEY))
