"""The store's tables, declared once for the queries; migrations create them.

Everything truesync remembers lives here: staged records of each run, the ledger of what
was last synced, watermarks, the exception queue, the audit trail of overwritten values
and the run reports.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

COUNT_COLUMNS = (
    "extracted",
    "created",
    "updated",
    "unchanged",
    "quarantined",
    "in_sync",
    "missing",
    "delayed",
    "overwritten",
    "mismatched",
    "invalid",
    "overdue",
    "exceptions_opened",
    "exceptions_resolved",
    "blocked_again",
    "deleted",
    "target_only",
    "removed",
    "soft_deleted",
    "reported",
    "quiet",
)

runs = Table(
    "ts_run",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("flow", String(100), nullable=False, index=True),
    Column("window_start", DateTime, nullable=False),
    Column("window_end", DateTime, nullable=False),
    Column("status", String(20), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("kind", String(20), nullable=False, default="sync"),  # sync (a window) or compare (everything)
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("report", Text),
    Index("ix_ts_run_newest", "flow", "kind", "started_at"),  # each flow's newest runs (store.status)
)

run_entities = Table(
    "ts_run_entity",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("entity", String(100), primary_key=True),
    Column("part", String(20), primary_key=True),
    *(Column(name, Integer, nullable=False, default=0) for name in COUNT_COLUMNS),
    Column("extract_seconds", Float, nullable=False, default=0.0),
    Column("sync_seconds", Float, nullable=False, default=0.0),
    Column("load_seconds", Float, nullable=False, default=0.0),
)

staging = Table(
    "ts_staging",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("entity", String(100), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("source_ts", DateTime),
    Column("payload", Text, nullable=False),
    Column("check_name", String(100)),
    Column("field", String(100)),
    Column("reason", Text),
    Column("value", Text),
)

results = Table(
    "ts_result",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("entity", String(100), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("class", String(20), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("overdue", Boolean, nullable=False),
    Column("check_name", String(100)),
    Column("field", String(100)),
    Column("reason", Text),
    Column("value", Text),
    Column("quiet", Boolean),  # compare runs: true for a difference no change time shows, else null
    Column("code_versions", String(500)),  # name@version of each code table that translated the record
    Index("ix_ts_result_record", "entity", "key"),  # one record's path (store.history)
)

# The compare tables are a run's scratch, emptied when it ends: UNLOGGED on PostgreSQL (``0003_compare``).
SCAN_PREFIX = "ts_scan_"  # each side's scanned keys of a compare: a table of its own (``scanned_keys``)


def scanned_keys(name: str, postgresql: bool = False) -> Table:
    """One side's keys as a compare scanned them, in a table of its own named ``name`` (``SCAN_PREFIX``), made
    when the entity's compare begins and dropped when the run ends (``store.compare``; migration 0011 dropped
    the one table all compares shared). Appended as read, no unique key: a key read twice keeps its
    reading of the highest ``seq``. UNLOGGED with no index on PostgreSQL, which joins the sides by
    hashing (``postgresql``); indexed by key elsewhere.
    """
    return Table(
        name,
        MetaData(),
        Column("key", String(255), nullable=False),
        Column("seq", Integer, nullable=False, server_default="0"),  # the chunk it was read in
        Column("hash", String(64)),  # classify.side_hash of the synced fields, or a digest; null: always compared
        Column("ts", DateTime),
        *([] if postgresql else [Index(f"{name}_key", "key")]),
        prefixes=["UNLOGGED"] if postgresql else [],
    )


compare_doubts = Table(  # keys a compare cannot confirm in sync from its scans and the ledger (migration 0010)
    "ts_compare_doubt",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("entity", String(100), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("s_seen", Integer),  # 1: the source holds the key; its reading (hash and change time) follows
    Column("s_hash", String(64)),
    Column("s_ts", DateTime),
    Column("t_seen", Integer),  # the same for the target
    Column("t_hash", String(64)),
    Column("t_ts", DateTime),
    Column("l_source_hash", String(64)),  # the key's ledger entry as the compare found it; null: none
    Column("l_target_hash", String(64)),
    Column("l_source_ts", DateTime),
    Column("l_target_ts", DateTime),
    Column("l_version", String(100)),
)

compare_diffs = Table(
    "ts_compare_diff",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("entity", String(100), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("action", String(10), nullable=False),  # sync, delete, report, forget
    Column("quiet_source", Boolean, nullable=False),
    Column("quiet_target", Boolean, nullable=False),
    Column("known", Boolean, nullable=False),  # in the exception queue before the compare: not news
)

ledger = Table(
    "ts_ledger",
    metadata,
    Column("flow", String(100), primary_key=True),
    Column("entity", String(100), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("source_hash", String(64), nullable=False),
    Column("target_hash", String(64), nullable=False),
    Column("source_ts", DateTime),
    Column("target_ts", DateTime),
    Column("mapping_version", String(100), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("synced_at", DateTime, nullable=False),
    Column("code_versions", String(500)),  # name@version of each code table that translated the record
)

watermarks = Table(
    "ts_watermark",
    metadata,
    Column("flow", String(100), primary_key=True),
    Column("committed_until", DateTime, nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

exceptions = Table(
    "ts_exception",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow", String(100), nullable=False),
    Column("entity", String(100), nullable=False),
    Column("key", String(255), nullable=False),
    Column("class", String(20), nullable=False),
    Column("check_name", String(100), nullable=False),
    Column("field", String(100)),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("status", String(20), nullable=False),
    Column("note", Text),
    Column("run_id", String(250), nullable=False),
    Column("decided_by", String(250)),  # who made the last decision (dashboard user, or the shell's user)
    Column("decided_at", DateTime),
    UniqueConstraint("flow", "entity", "key", name="uq_ts_exception_record"),
    Index("ix_ts_exception_status", "status", "flow", "entity"),
    Index("ix_ts_exception_seen", "last_seen", "id"),  # the queue's pages, newest seen first
)

audit = Table(
    "ts_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(250), nullable=False, index=True),
    Column("flow", String(100), nullable=False),
    Column("entity", String(100), nullable=False),
    Column("key", String(255), nullable=False),
    Column("field", String(100), nullable=False),
    Column("overwritten_value", Text),
    Column("restored_value", Text),
    Column("at", DateTime, nullable=False),
    Index("ix_ts_audit_record", "flow", "entity", "key"),
)

checks = Table(
    "ts_check",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(250), nullable=False),
    Column("entity", String(100), nullable=False),
    Column("phase", String(20), nullable=False),
    Column("position", Integer, nullable=False),
    Column("expectation", String(200), nullable=False),
    Column("column_name", String(200)),
    Column("severity", String(10), nullable=False),
    Column("rule", Text, nullable=False),
    Column("kwargs", Text, nullable=False),
    Column("evaluated", Integer, nullable=False),
    Column("unexpected", Integer, nullable=False),
    Column("examples", Text, nullable=False),
    Column("error", Text),
    Column("observed", Text),
    Index("ix_ts_check_run", "run_id", "entity", "phase"),
)

files = Table(
    "ts_file",
    metadata,
    Column("flow", String(100), primary_key=True),
    Column("entity", String(100), primary_key=True),
    Column("path", String(1000), primary_key=True),  # relative to the file system's base URL
    Column("run_id", String(250), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("modified", DateTime),
    Column("checksum", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("latest", DateTime),  # the newest readable change time in the file
    Column("unkeyed", Integer, nullable=False),  # rows without key or change time: read again every run
    Column("read_until", DateTime, nullable=False),  # records changed before it were taken
    Column("committed", Boolean, nullable=False),  # the run that read it committed its watermark
    Column("read_at", DateTime, nullable=False),
)

code_tables = Table(
    "ts_code_table",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("version", String(100), primary_key=True),
    Column("content_hash", String(64), nullable=False),  # a version's content, fixed by its first use
    Column("first_used", DateTime, nullable=False),
    Column("run_id", String(250), nullable=False),
)

last_seen = Table(
    "ts_last_seen",
    metadata,
    Column("flow", String(100), primary_key=True),
    Column("entity", String(100), primary_key=True),
    Column("grp", String(255), primary_key=True),  # a value of the silence rule's ``by`` field (a terminal)
    Column("value", Text),  # the state of the group's newest record
    Column("at", DateTime, nullable=False),  # that record's change time
    Column("run_id", String(250), nullable=False),
)

rate_slots = Table(
    "ts_rate_slot",
    metadata,
    Column("system", String(100), primary_key=True),
    Column("next_at", Float, nullable=False),  # when the next request slot starts: seconds since the epoch
)
