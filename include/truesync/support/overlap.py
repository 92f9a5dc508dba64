"""Overlap database waits with the work between them: a read one step ahead, a write one step behind.

A sync spends much of its time waiting on a socket: for the next page of the source, for
the store to take a chunk's ledger entries. A network driver (psycopg2, PyMySQL) waits
without holding the GIL, so a second thread can wait while the caller's thread maps,
checks and classifies. SQLite's driver does most of a write under the GIL, so there the
overlap gains nothing (``docs/design.md``, "Known limits"), and costs nothing either.
Each helper keeps one thread and one item in flight, so the order of reads and writes is
the caller's and memory grows by one chunk at most.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterator[T], name: str) -> Iterator[T]:
    """``items`` in order, each next one read on a thread of its own while the caller works on the
    one it has. A failure to read arrives where the item would have.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as pool:
        pending = pool.submit(next, items, _END)
        while (item := pending.result()) is not _END:
            pending = pool.submit(next, items, _END)
            yield item


class WriteBehind:
    """Writes run in the order given, on a thread of their own, at most one behind the caller.

    ``submit`` first waits for the write in flight, so a write never overtakes another and
    at most one chunk waits in memory. A write that returns a mapping of counts (a
    ``Counter``, a dict) adds them up in ``counts``, read once the writes are settled; other
    results are dropped. ``waited`` is how long the caller spent waiting for writes in flight.
    The first failed write raises in the caller at the next ``submit`` or ``settle``. Leaving
    the ``with`` block settles; when the block itself failed, it waits for the write in flight
    and lets the block's own error through.
    """

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._in_flight: Future[Any] | None = None
        self.counts: Counter[str] = Counter()
        self.waited = 0.0

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        self.settle()
        self._in_flight = self._pool.submit(write, *args)

    def settle(self) -> None:
        """Wait for the write in flight; its failure is raised here."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return
        began = time.monotonic()
        result = in_flight.result()
        self.waited += time.monotonic() - began
        if isinstance(result, Mapping):
            self.counts.update(result)

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.settle()
        finally:
            self._pool.shutdown(wait=True)
