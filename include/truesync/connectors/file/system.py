"""File systems over Airflow's ``ObjectStoragePath``: a folder or bucket of CSV or JSON Lines files as a source.

The rules (``docs/design.md``, "File systems"):

- **Which files.** A run reads a dataset's files that are new, rewritten, or still hold
  records changed after what a committed run took from them (the flow's file ledger,
  ``FileLedger``). A file whose size and time match its committed mark is not opened; one
  opened whose checksum matches is the same content. A file with the content of another
  file already read is a redelivery: only what follows the original's ``read_until`` is
  taken from it (usually nothing), and its rows without key report under the original's
  name while the original is still there.
- **Which records.** From a new or rewritten file, every record changed before the window's
  end, however old (a late file's records are late, not lost); from a file read before, the
  records changed since. Records changed after the window's end wait for a later window.
  Within a run the newest version of a key wins (records are handed over oldest first).
- **Not yet delivered.** A file named with a partial suffix (``.part``) is not read; a file
  changed less than ``settle`` ago is listed again after it, and one still growing waits
  for the next run.
- **Bad rows.** Rows without a key or readable change time, and rows that cannot be read
  (``reading``), are handed over by ``unwindowed_rows`` on every run while their file holds
  them, as a SQL table's are, with the file and line in their reason.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from truesync.config import EntityMapping
from truesync.connectors.base import ORIGIN, PROBLEM, FileLedger, FileMark, SoftMark
from truesync.connectors.errors import ConfigurationProblem, SystemUnavailable
from truesync.connectors.file.location import Location, file_location
from truesync.connectors.file.reading import read_rows
from truesync.connectors.file.settings import DatasetConfig, FileConfig
from truesync.core.canonical import raw_keys, to_utc_naive


@dataclass(frozen=True)
class Listed:
    """A file as a listing saw it."""

    path: Any  # ObjectStoragePath
    size: int
    modified: datetime | None

    def signature(self) -> tuple[int, datetime | None]:
        return self.size, self.modified


class FileSystem:
    """One drop of files: new and changed files by the ledger, every file for lookups and compares."""

    def __init__(self, name: str, config: FileConfig, location: Location) -> None:
        self.name, self.config, self.location = name, config, location
        self._ledger: FileLedger | None = None
        self._unkeyed: dict[str, list[pd.DataFrame]] = {}  # dataset -> rows without key or time this extract read
        self._opened: dict[str, set[str]] = {}  # dataset -> paths this extract read
        self._newest_read: dict[tuple[str, ...], pd.DataFrame] = {}  # dataset and columns -> newest versions

    @classmethod
    def open(cls, name: str, settings: FileConfig, connection: str) -> FileSystem:
        """The files behind an Airflow connection holding their base URL (and the credentials)."""
        return cls(name, settings, file_location(connection))

    def describe(self) -> str:
        return f"system '{self.name}' ({self.location.shown()})"

    def remember(self, ledger: FileLedger) -> None:
        """Read by this flow's file ledger from now on (``connectors.base.KeepsFiles``)."""
        self._ledger = ledger

    def extract(self, mapping: EntityMapping, start: datetime, end: datetime, size: int) -> Iterator[pd.DataFrame]:
        """The records of new and changed files up to ``end`` (see the module docstring), oldest first.

        ``start`` is not a bound: a file delivered late still brings its records.
        """
        dataset = self._dataset(mapping)
        before = self._ledger.committed() if self._ledger else {}
        listed = self._settled(dataset)
        if not listed and not before:
            raise ConfigurationProblem(
                f"{self.describe()}: dataset '{mapping.table}' matches no file (glob '{dataset.glob}'); "
                "check the glob in systems.yaml"
            )
        read_before = {mark.checksum: path for path, mark in before.items()}
        read_now: dict[str, FileMark] = {}
        marks, taken = [], []
        self._unkeyed[mapping.table], self._opened[mapping.table] = [], set()
        for path, seen in sorted(listed.items()):
            prior = before.get(path)
            if prior is not None and _unchanged(prior, seen) and not _pending(prior, end):
                continue
            data = self._bytes(seen.path)
            checksum = hashlib.sha256(data).hexdigest()
            if prior is None and checksum in read_now:  # delivered twice at once: the first copy is read
                marks.append(replace(read_now[checksum], path=path, size=seen.size, modified=seen.modified, unkeyed=0))
                continue
            twin = read_before.get(checksum) if prior is None else None  # this content, read under another name
            same = prior if prior is not None else before.get(twin) if twin else None
            since = same.read_until if same is not None and same.checksum == checksum else None  # only what follows
            rows = read_rows(data, path, dataset, mapping.columns)
            times, keyed = _readable(rows, mapping)
            wanted = keyed & (times < end) & (times >= since if since is not None else True)
            taken.append(rows[wanted].drop(columns=PROBLEM).assign(_ts=times[wanted]))
            unkeyed = rows.iloc[:0] if twin in listed else rows[~keyed]  # the original still reports its own
            self._unkeyed[mapping.table].append(unkeyed)
            self._opened[mapping.table].add(path)
            latest = times[keyed].max() if keyed.any() else None
            until = max(end, since) if since is not None else end
            marks.append(FileMark(path, seen.size, seen.modified, checksum, len(rows), latest, len(unkeyed), until))
            read_now.setdefault(checksum, marks[-1])
        if self._ledger is not None:
            self._ledger.record(marks)
        yield from _in_frames(_oldest_first(taken), size)

    def unwindowed_rows(self, mapping: EntityMapping, size: int) -> Iterator[pd.DataFrame]:
        """Rows without key or readable change time, and unreadable rows, of every file that holds them.

        Those the last ``extract`` read, and those of files a committed run recorded with such
        rows; so they stay in the queue while their file holds them, and resolve once it no longer does.
        """
        dataset = self._dataset(mapping)
        parts = self._unkeyed.pop(mapping.table, [])
        opened = self._opened.pop(mapping.table, set())
        before = self._ledger.committed() if self._ledger else {}
        root = self._root()
        for path, mark in sorted(before.items()):
            if mark.unkeyed and path not in opened and (root / path).exists():
                rows = read_rows(self._bytes(root / path), path, dataset, mapping.columns)
                parts.append(rows[~_readable(rows, mapping)[1]])
        yield from _in_frames(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), size)

    def fetch(self, mapping: EntityMapping, keys: list[str], hidden: SoftMark = None) -> pd.DataFrame:
        """The newest version of each of ``keys`` in any file: retries of the exception queue read every file.

        Files have no soft deletes: ``hidden`` (asked of every system by a trace) changes nothing.
        """
        frame = self._newest(mapping)
        return frame[raw_keys(frame, mapping).isin(set(keys))].reset_index(drop=True)

    def scan(self, mapping: EntityMapping, size: int, hidden: SoftMark = None) -> Iterator[pd.DataFrame]:
        """Every key's newest version in any file, ``size`` at a time (a full compare); files have no soft deletes."""
        yield from _in_frames(self._newest(mapping), size)

    def _newest(self, mapping: EntityMapping) -> pd.DataFrame:
        """Every key's newest version in any file, read once per connector (one stage of a run), not once
        per page of keys a retry or a reprocess looks up. A narrowed mapping (a compare asking only
        for keys) reads its own columns: it must not stand in for the full mapping, nor it for it.
        """
        read = (mapping.table, *mapping.columns)
        if read not in self._newest_read:
            self._newest_read[read] = self._read_newest(mapping)
        return self._newest_read[read]

    def _read_newest(self, mapping: EntityMapping) -> pd.DataFrame:
        dataset, parts = self._dataset(mapping), []
        for path, seen in sorted(self._settled(dataset).items()):
            rows = read_rows(self._bytes(seen.path), path, dataset, mapping.columns)
            times, keyed = _readable(rows, mapping)
            parts.append(rows[keyed].drop(columns=PROBLEM).assign(_ts=times[keyed]))
        if not parts:
            return pd.DataFrame(columns=[*mapping.columns, ORIGIN], dtype=object)
        return _oldest_first(parts).drop_duplicates(mapping.key_columns, keep="last").reset_index(drop=True)

    def _dataset(self, mapping: EntityMapping) -> DatasetConfig:
        return self.config.datasets[mapping.table]

    def _root(self) -> Any:
        """The base URL as an ``ObjectStoragePath``; a scheme nobody registered, or a missing folder, is named."""
        from airflow.sdk import ObjectStoragePath  # the task SDK: imported when a file system is reached

        try:
            root = ObjectStoragePath(self.location.url, conn_id=self.location.conn_id)
            exists = root.exists()
        except ValueError as exc:  # fsspec: "Unsupported filesystem"; Airflow: "No filesystem registered for scheme"
            raise ConfigurationProblem(
                f"{self.describe()}: {exc}; install the Airflow provider of that storage (see docs/configuration.md)"
            ) from exc
        except OSError as exc:
            raise SystemUnavailable(f"{self.describe()} is unreachable: {exc}") from exc
        if not exists:
            raise ConfigurationProblem(f"{self.describe()}: the folder does not exist")
        return root

    def _listing(self, root: Any, dataset: DatasetConfig) -> dict[str, Listed]:
        """Files of the dataset by path relative to the base URL, without those still being written."""
        found = {}
        try:
            for path in root.glob(dataset.glob):
                name = str(path.relative_to(root))
                if path.is_file() and not name.endswith(tuple(self.config.partial_suffixes)):
                    found[name] = self._seen(path)
        except OSError as exc:
            raise SystemUnavailable(f"{self.describe()}: listing failed: {exc}") from exc
        return found

    def _settled(self, dataset: DatasetConfig) -> dict[str, Listed]:
        """The listing, without files that changed between two listings ``settle`` apart.

        The second listing is made only when a file changed less than ``settle`` ago.
        """
        root = self._root()
        first = self._listing(root, dataset)
        now = datetime.now(UTC).replace(tzinfo=None)
        settle = self.config.settle
        changed = [s.modified for s in first.values() if s.modified is not None and now - s.modified < settle]
        if not changed:
            return first
        time.sleep(min(settle, settle - (now - max(changed))).total_seconds())  # a time ahead of ours: one settle
        second = self._listing(root, dataset)
        return {p: s for p, s in first.items() if p in second and second[p].signature() == s.signature()}

    def _seen(self, path: Any) -> Listed:
        stat = path.stat()
        mtime = getattr(stat, "st_mtime", None)
        modified = datetime.fromtimestamp(mtime, UTC).replace(tzinfo=None) if mtime else None
        return Listed(path, int(stat.st_size), modified)

    def _bytes(self, path: Any) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise SystemUnavailable(f"{self.describe()}: reading {path} failed: {exc}") from exc


def _unchanged(mark: FileMark, seen: Listed) -> bool:
    """Size and time as a committed run read it (storage without times is always opened and checksummed)."""
    return seen.modified is not None and (mark.size, mark.modified) == seen.signature()


def _pending(mark: FileMark, end: datetime) -> bool:
    """The file holds records changed after what was taken, and this window reaches past it."""
    return mark.latest is not None and mark.latest >= mark.read_until and mark.read_until < end


def _readable(rows: pd.DataFrame, mapping: EntityMapping) -> tuple[pd.Series, pd.Series]:
    """Each row's change time (naive UTC), and whether it has a key and a readable change time."""
    times = to_utc_naive(rows[mapping.cursor]) if mapping.cursor else pd.Series(pd.NaT, index=rows.index)
    keyed = rows[mapping.key_columns].notna().all(axis=1)
    return times, keyed & times.notna() & rows[PROBLEM].isna()


def _oldest_first(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of ``parts`` (each with its change time ``_ts``) by change time, ties in file order, without it."""
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, ignore_index=True).sort_values("_ts", kind="stable").drop(columns="_ts")
    return frame.reset_index(drop=True)


def _in_frames(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    """``frame`` in consecutive frames of ``size`` rows (none for an empty one)."""
    for at in range(0, len(frame), size):
        yield frame.iloc[at : at + size].reset_index(drop=True)
