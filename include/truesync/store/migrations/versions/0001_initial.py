"""Initial store: runs, per-entity counts, staging, results, ledger, watermarks, exceptions, audit.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

_COUNTS = (
    "extracted", "created", "updated", "unchanged", "quarantined", "in_sync", "missing",
    "delayed", "overwritten", "mismatched", "invalid", "overdue", "exceptions_opened",
    "exceptions_resolved",
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "ts_run",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("flow", sa.String(100), nullable=False, index=True),
        sa.Column("window_start", sa.DateTime, nullable=False),
        sa.Column("window_end", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("report", sa.Text),
    )
    op.create_table(
        "ts_run_entity",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("part", sa.String(20), primary_key=True),
        *(sa.Column(name, sa.Integer, nullable=False) for name in _COUNTS),
        sa.Column("extract_seconds", sa.Float, nullable=False),
        sa.Column("sync_seconds", sa.Float, nullable=False),
        sa.Column("load_seconds", sa.Float, nullable=False),
    )
    op.create_table(
        "ts_staging",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("source_ts", sa.DateTime),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("check_name", sa.String(100)),
        sa.Column("field", sa.String(100)),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "ts_result",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("class", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("overdue", sa.Boolean, nullable=False),
        sa.Column("check_name", sa.String(100)),
        sa.Column("field", sa.String(100)),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "ts_ledger",
        sa.Column("flow", sa.String(100), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("target_hash", sa.String(64), nullable=False),
        sa.Column("source_ts", sa.DateTime),
        sa.Column("target_ts", sa.DateTime),
        sa.Column("mapping_version", sa.String(100), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("synced_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ts_watermark",
        sa.Column("flow", sa.String(100), primary_key=True),
        sa.Column("committed_until", sa.DateTime, nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ts_exception",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("class", sa.String(20), nullable=False),
        sa.Column("check_name", sa.String(100), nullable=False),
        sa.Column("field", sa.String(100)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("first_seen", sa.DateTime, nullable=False),
        sa.Column("last_seen", sa.DateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.UniqueConstraint("flow", "entity", "key", name="uq_ts_exception_record"),
    )
    op.create_index("ix_ts_exception_status", "ts_exception", ["status", "flow", "entity"])
    op.create_table(
        "ts_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(250), nullable=False, index=True),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("field", sa.String(100), nullable=False),
        sa.Column("overwritten_value", sa.Text),
        sa.Column("restored_value", sa.Text),
        sa.Column("at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("ts_audit", "ts_exception", "ts_watermark", "ts_ledger", "ts_result", "ts_staging",
                  "ts_run_entity", "ts_run"):  # fmt: skip
        op.drop_table(table)
