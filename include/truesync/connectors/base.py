"""The two roles a system plays, as the pipeline sees them: a source it reads, a target it writes.

Neither role names a SQLAlchemy type: a kind of system is free to reach its records any way.
Keys travel as text; rows come back as pandas frames with one object column per mapped
column (and the extra column of ``fetch_by``). A failure is one of ``errors``: transient
(``SystemUnavailable``), a mismatch with the configuration (``ConfigurationProblem``) or
records the target refused (``RecordsRejected``).

A source read file by file (kind ``file``) also keeps a ledger of the files it read
(``FileLedger``): the extract hands it one for the flow, entity and run (``KeepsFiles``).
A system with a request-rate ceiling (kind ``rest``) takes the deployment's shared ceilings
when it is opened (``Ceilings``; the store keeps them, ``store.rate_limits``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from truesync.config import EntityMapping
from truesync.support.bulk import Rows

SoftMark = tuple[str, str | None] | None  # (column, value) marking a soft-deleted row; value None: any value
DIGEST_COLUMN = "truesync_digest"  # the digest beside a row's key and change time (``ScansDigests``)
ORIGIN = "_origin"  # column a source may add to its frames: where a record was read (file and line)
PROBLEM = "_problem"  # column a source may add: why a row could not be read at all (the row is quarantined)


class Ceiling(Protocol):
    """A request-rate ceiling: ``wait`` returns when the next request may start."""

    def wait(self) -> None: ...


Ceilings = Callable[[str, float], Ceiling]  # (system, requests per second) -> that system's ceiling


class Source(Protocol):
    """A system read by change time: the window of a run, records by key, and records no window can find."""

    name: str

    def describe(self) -> str:
        """``system 'x' (url without password)``: the only form of the system that reaches a message."""
        ...

    def extract(self, mapping: EntityMapping, start: datetime, end: datetime, size: int) -> Iterator[pd.DataFrame]:
        """Records changed in ``[start, end)``, each once, in frames of about ``size`` rows.

        A file source reads by files instead: every record changed before ``end`` in the files
        its ledger has not seen (``connectors/file/system.py``).
        """
        ...

    def fetch(self, mapping: EntityMapping, keys: list[str]) -> pd.DataFrame:
        """The current records of ``keys``; a key the system does not hold is absent."""
        ...

    def unwindowed_rows(self, mapping: EntityMapping, size: int) -> Iterator[pd.DataFrame]:
        """Records without key or change time, all of them on every call: they go to the exception queue."""
        ...

    def scan(self, mapping: EntityMapping, size: int, hidden: SoftMark = None) -> Iterator[pd.DataFrame]:
        """Every record with a key, in any order, in frames of about ``size`` rows (a full compare)."""
        ...


class Target(Protocol):
    """A system written by external key, and read back to compare and to check references."""

    name: str

    def describe(self) -> str:
        """``system 'x' (url without password)``: the only form of the system that reaches a message."""
        ...

    def fetch(self, mapping: EntityMapping, keys: list[str], hidden: SoftMark = None) -> pd.DataFrame:
        """The current records of ``keys``; a key the system does not hold, or ``hidden`` marks deleted, is absent."""
        ...

    def fetch_by(self, mapping: EntityMapping, column: str, values: list[str]) -> pd.DataFrame:
        """The current records whose ``column`` holds one of ``values``, with that column."""
        ...

    def columns(self, mapping: EntityMapping) -> dict[str, type | None]:
        """The columns the mapped table accepts and the Python type each takes (None: any, sent as text).

        The first call reaches the system: unreachable is ``SystemUnavailable``; a missing table,
        column or endpoint is ``ConfigurationProblem``.
        """
        ...

    def scan(self, mapping: EntityMapping, size: int, hidden: SoftMark = None) -> Iterator[pd.DataFrame]:
        """Every live record with a key, in any order, in frames of about ``size`` rows (a full compare).

        ``hidden`` is a soft-delete mark ``(column, value)``: rows it marks are left out.
        """
        ...

    def require_unique_key(self, mapping: EntityMapping) -> None:
        """Raise ``ConfigurationProblem`` unless the key tells the target's records apart."""
        ...

    def folds_case(self, mapping: EntityMapping) -> bool:
        """Whether the target takes two keys that differ only in case for one (a case-insensitive key column)."""
        ...

    def delete(self, mapping: EntityMapping, keys: list[str]) -> int:
        """Remove the records of ``keys``; returns how many were removed."""
        ...

    def mark_deleted(self, mapping: EntityMapping, keys: list[str], column: str, value: Any) -> int:
        """Soft delete: set ``column`` to ``value`` on the records of ``keys``; returns how many."""
        ...

    def write(self, mapping: EntityMapping, rows: Rows, batch_size: int, run_id: str = "") -> int:
        """Create-or-update ``rows`` (dicts, or a frame's rows) by key, returning how many were written;
        writing them again changes nothing.

        ``run_id`` scopes idempotency keys where the system uses them.
        """
        ...


@dataclass(frozen=True)
class FileMark:
    """What a run read of one file: its signature, and how far in change time its records were taken.

    Records changed before ``read_until`` were taken; a file whose ``latest`` change time is
    at or after it still holds records for a later window. ``unkeyed`` counts rows without
    a key or a readable change time, read again on every run (they stay in the queue).
    """

    path: str  # relative to the system's base URL
    size: int
    modified: datetime | None  # None where the storage keeps no modification time
    checksum: str  # SHA-256 of the content
    rows: int
    latest: datetime | None
    unkeyed: int
    read_until: datetime


class FileLedger(Protocol):
    """The files one flow read for one entity: those of committed runs, and this run's."""

    def committed(self) -> dict[str, FileMark]:
        """Path -> the mark of the last committed run that read it."""
        ...

    def record(self, marks: list[FileMark]) -> None:
        """This run's marks, replacing any it recorded before (a retried extract)."""
        ...


@runtime_checkable
class RateLimited(Protocol):
    """A system with a request-rate ceiling: it takes the one every worker shares when opened."""

    def share_ceiling(self, ceilings: Ceilings) -> None: ...


@runtime_checkable
class KeepsFiles(Protocol):
    """A source that reads new and changed files only, by a ledger the extract hands it."""

    def remember(self, ledger: FileLedger) -> None: ...


@runtime_checkable
class ScansKeysOnce(Protocol):
    """A system that can promise its ``scan`` returns each key at most once (one query over a unique key)."""

    def scans_each_key_once(self, mapping: EntityMapping) -> bool: ...


@runtime_checkable
class ScansDigests(Protocol):
    """A system that can hash the compared columns of its rows itself (``docs/design.md``, "Digests")."""

    def gives_digests(self) -> bool:
        """Whether ``scan_digests`` works here (its database has the hash function)."""
        ...

    def plain_columns(self, mapping: EntityMapping, columns: list[str]) -> set[str]:
        """Those of ``columns`` whose every value's text holds no ``|`` and starts with no ``~`` (numbers, dates,
        times): a column that is plain on both sides may be spelled without its length."""
        ...

    def scan_digests(
        self,
        mapping: EntityMapping,
        columns: list[str],
        size: int,
        hidden: SoftMark = None,
        plain: Collection[str] = (),
    ) -> Iterator[pd.DataFrame]:
        """As ``scan``, but each row holds only the key columns, the cursor and the digest of ``columns``, those
        in ``plain`` (``plain_columns`` of both sides) spelled without their length."""
        ...


@runtime_checkable
class CopiesDigests(Protocol):
    """A system that can spell its digests as a PostgreSQL store keeps them, for a ``COPY`` from one to the
    other (``support.copy_stream``; ``docs/design.md``, "Digests")."""

    def copies_digests(self, mapping: EntityMapping) -> bool:
        """Whether ``copy_digests`` works for this table: PostgreSQL, one whole-number key column that holds
        each key once (its text is its canonical key), a change time of a date or time type, or none."""
        ...

    def copy_digests(
        self, mapping: EntityMapping, columns: list[str], hidden: SoftMark, prefix: str, plain: Collection[str] = ()
    ) -> Generator[bytes, None, None]:
        """Every row's key, change time (naive UTC) and ``prefix`` + digest of ``columns`` (``plain`` as in
        ``ScansDigests.scan_digests``), as ``COPY`` text lines."""
        ...
