"""A compare's scanned keys are appended in the order they were read, with no unique key to keep.

On PostgreSQL the table has no index at all: its primary key cost more than reading both
sides (each scanned row a probe of a wide composite key), and the store joins the two sides
by hashing. Elsewhere a plain index on the key stays for the joins. The table is scratch,
emptied when a compare ends, so it is made again.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"

_KEY = {"run_id": 250, "entity": 100, "key": 255, "side": 1}  # column and length


def _remake(seq: bool) -> None:
    """``ts_compare_key`` made again, empty, with the ``seq`` column (appended) or as revision 0003 made it."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.drop_table("ts_compare_key")
    op.create_table(
        "ts_compare_key",
        *(sa.Column(name, sa.String(size), nullable=False, primary_key=not seq) for name, size in _KEY.items()),
        *([sa.Column("seq", sa.Integer, nullable=False)] if seq else []),
        sa.Column("hash", sa.String(64)),
        sa.Column("ts", sa.DateTime),
        prefixes=["UNLOGGED"] if postgresql else [],
    )
    if seq and not postgresql:
        op.create_index("ix_ts_compare_key", "ts_compare_key", list(_KEY))


def upgrade() -> None:
    _remake(seq=True)


def downgrade() -> None:
    _remake(seq=False)
