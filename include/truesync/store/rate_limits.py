"""REST rate ceilings shared by every worker: the next free request slot of each system, in the store.

A system's ``rate_limit`` is a ceiling for the whole deployment, not for one process: mapped
sync tasks on several Celery workers, and flows reading and writing the same API, share it.
The store holds, per system, when its next request slot starts (``ts_rate_slot``). A process
takes a block of slots at once (a tenth of a second's worth, at least one) with one atomic
``UPDATE … RETURNING`` that moves the system's next slot past the block, then starts its
requests at those slots' times. Blocks never overlap, so the starts of all workers together
stay under the ceiling; slots a process does not use in time are let go (a slot more than one
interval old is never used late), so the ceiling may go unreached but is never passed.

The times are wall-clock seconds (``time.time()``): workers on several hosts need clocks kept
in step (NTP), as Airflow's own scheduling does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from sqlalchemy import case, insert, update
from sqlalchemy.exc import IntegrityError

from truesync.connectors.base import Ceiling
from truesync.store.core import Store
from truesync.store.schema import rate_slots

BLOCK_SECONDS = 0.1  # slots a process takes at once: this long at the ceiling's rate


class SharedCeiling:
    """At most ``per_second`` request starts per second for ``system``, across every process using the store."""

    def __init__(self, store: Store, system: str, per_second: float) -> None:
        self.store, self.system = store, system
        self.interval = 1.0 / per_second
        self.block = max(1, int(per_second * BLOCK_SECONDS))
        self._lock = threading.Lock()
        self._slots: deque[float] = deque()

    def wait(self) -> None:
        """Sleep until this process's next slot."""
        with self._lock:
            now = time.time()
            while self._slots and self._slots[0] < now - self.interval:
                self._slots.popleft()
            if not self._slots:
                start = self._reserve(now)
                self._slots.extend(start + i * self.interval for i in range(self.block))
            at = self._slots.popleft()
        if at > now:
            time.sleep(at - now)

    def _reserve(self, now: float) -> float:
        """Take the next block of slots in the store; returns when its first slot starts."""
        span = self.block * self.interval
        next_at = rate_slots.c.next_at
        moved = (
            update(rate_slots)
            .where(rate_slots.c.system == self.system)
            .values(next_at=case((next_at > now, next_at), else_=now) + span)
            .returning(rate_slots.c.next_at)
        )
        with self.store.engine.begin() as conn:
            end = conn.execute(moved).scalar()
        if end is None:  # the system's first request: its row is made once, by whichever process comes first
            try:
                with self.store.engine.begin() as conn:
                    conn.execute(insert(rate_slots).values(system=self.system, next_at=now))
            except IntegrityError:
                pass
            return self._reserve(now)
        return end - span


_CEILINGS: dict[tuple[str, str, float], SharedCeiling] = {}
_CEILINGS_LOCK = threading.Lock()


def shared_ceilings(store: Store) -> Callable[[str, float], Ceiling]:
    """The store's ceiling of each system, one per process (its connectors share the block of slots)."""

    def ceiling(system: str, per_second: float) -> Ceiling:
        name = (store.url.render_as_string(hide_password=False), system, per_second)
        with _CEILINGS_LOCK:
            return _CEILINGS.setdefault(name, SharedCeiling(store, system, per_second))

    return ceiling
