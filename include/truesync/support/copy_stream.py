"""PostgreSQL ``COPY`` text streamed from one database into another through this process.

Where both ends are PostgreSQL and the rows need no Python to become what the other end
keeps (a compare's digests, ``docs/design.md``, "Digests"), the source's ``COPY … TO STDOUT``
is fed to the store's ``COPY … FROM STDIN`` as bytes: no row is parsed, boxed or spelled again
here. The source is read on a thread of its own while the store takes the blocks already read,
and at most ``QUEUED`` blocks of about ``block`` bytes wait between them, so memory stays
bounded whatever the table's size.

Both sessions speak UTF-8 and ISO dates (``SESSION``), so text and times read back as they
were written, whatever either server's defaults.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Engine

from truesync.support.bulk import copy_from_stdin, driver_errors

BLOCK = 1 << 20  # bytes of COPY text handed over at once
QUEUED = 4  # blocks read ahead of the store at most
THREAD = "truesync-copy-out"  # the source's reader
SESSION = ("SET LOCAL client_encoding = 'UTF8'", "SET LOCAL DateStyle = 'ISO, YMD'")
_END = object()


class _Abandoned(Exception):
    """The reader of a stream stopped before its end: the source's COPY is cut short."""


def copy_out(engine: Engine, query: str, block: int = BLOCK) -> Generator[bytes, None, None]:
    """The rows of ``query`` in ``COPY`` text format, in blocks of whole lines of about ``block`` bytes.

    The source's error arrives where its next block would have. A reader that stops early
    cuts the ``COPY`` short, and the connection it ran on is dropped, not pooled.
    """
    blocks: queue.Queue[Any] = queue.Queue(maxsize=QUEUED)
    stop = threading.Event()
    statement = f"COPY ({query}) TO STDOUT"
    reader = threading.Thread(target=_read, args=(engine, statement, _Blocks(blocks, stop, block)), name=THREAD)
    reader.start()
    try:
        while (item := blocks.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a writer waiting for room
            with contextlib.suppress(queue.Empty):
                blocks.get(timeout=0.05)


def _read(engine: Engine, statement: str, sink: _Blocks) -> None:
    """Run the source's ``COPY … TO STDOUT`` into ``sink``; its end or its error goes to the reader."""
    try:
        with engine.connect() as conn:  # its transaction, begun by the settings, ends with it
            try:
                _session(conn)
                with driver_errors(conn, statement) as cursor:
                    cursor.copy_expert(statement, sink)
            except BaseException:
                conn.invalidate()  # a COPY cut short leaves the connection mid-protocol
                raise
        sink.flush()
        sink.put(_END)
    except _Abandoned:
        return
    except Exception as exc:  # noqa: BLE001 - handed to the reader, which raises it
        sink.put(exc)


class _Blocks:
    """The file ``copy_expert`` writes the source's lines to: joined into blocks, queued for the reader."""

    def __init__(self, blocks: queue.Queue[Any], stop: threading.Event, size: int) -> None:
        self.blocks, self.stop, self.size = blocks, stop, size
        self.lines: list[bytes] = []
        self.held = 0

    def write(self, data: bytes) -> None:
        self.lines.append(data)
        self.held += len(data)
        if self.held >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            self.put(b"".join(self.lines))
            self.lines, self.held = [], 0

    def put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.blocks.put(item, timeout=0.05)
                return
            except queue.Full:
                continue
        raise _Abandoned


def copy_in(conn: Connection, table: Table, columns: list[str], blocks: Iterator[bytes]) -> int:
    """Append ``blocks`` of ``COPY`` text lines holding ``columns`` to ``table``, in the caller's transaction;
    returns the rows appended."""
    _session(conn)
    statement = copy_from_stdin(table, columns)
    with driver_errors(conn, statement) as cursor:
        cursor.copy_expert(statement, _Lines(blocks), size=BLOCK)
        return int(cursor.rowcount)


class _Lines:
    """The file ``copy_expert`` reads from: the next block whole, whatever size it asks for."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self.blocks = blocks

    def read(self, size: int = -1) -> bytes:
        return next(self.blocks, b"")


def _session(conn: Connection) -> None:
    for setting in SESSION:
        conn.exec_driver_sql(setting)
