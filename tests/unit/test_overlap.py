"""The read one step ahead and the write one step behind (``support.overlap``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from truesync.support.overlap import WriteBehind, read_ahead


def _eventually(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_read_ahead_gives_every_item_in_order_reading_the_next_while_the_caller_holds_one() -> None:
    pulled: list[int] = []
    readers: set[str] = set()

    def items() -> Iterator[int]:
        for n in range(5):
            pulled.append(n)
            readers.add(threading.current_thread().name)
            yield n

    seen = []
    for item in read_ahead(items(), "test-read"):
        seen.append(item)
        if item < 4:  # the next item is read while this one is worked on, and never one more
            assert _eventually(lambda n=item + 2: len(pulled) == n), pulled
            time.sleep(0.05)
            assert len(pulled) == item + 2
    assert seen == [0, 1, 2, 3, 4]
    assert readers and all(name.startswith("test-read") for name in readers)


def test_a_failed_read_arrives_where_its_item_would_have() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ConnectionError("source went away after two")

    got = []
    with pytest.raises(ConnectionError, match="after two"):
        for item in read_ahead(items(), "test-read"):
            got.append(item)
    assert got == [1, 2]


def test_writes_run_in_order_one_at_a_time_off_the_caller_s_thread_and_add_up_their_counts() -> None:
    log: list[tuple[str, int]] = []
    first_may_end = threading.Event()

    def write(n: int) -> dict[str, int]:
        if n == 0:
            assert first_may_end.wait(5)
        log.append((threading.current_thread().name, n))
        return {"written": n, "calls": 1}

    with WriteBehind("test-write") as behind:
        behind.submit(write, 0)
        assert log == []  # the caller went on while the first write waits
        waiter = threading.Thread(target=behind.submit, args=(write, 1))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive() and log == []  # the second waits for the first: never two in flight
        first_may_end.set()
        waiter.join(5)
        behind.submit(write, 2)
        behind.submit(len, "not counts")  # a result that is no mapping of counts is dropped
    assert [n for _, n in log] == [0, 1, 2]
    assert all(name.startswith("test-write") for name, _ in log)
    assert behind.counts == {"written": 3, "calls": 3}
    assert behind.waited >= 0.15, "the second submit waited for the first write"


def test_a_failed_write_raises_in_the_caller_at_the_next_submit_and_stops_the_ones_after_it() -> None:
    done: list[int] = []

    def write(n: int) -> None:
        if n == 1:
            raise ValueError("store refused chunk 1")
        done.append(n)

    behind = WriteBehind("test-write")
    with pytest.raises(ValueError, match="chunk 1"), behind:
        for n in range(4):
            behind.submit(write, n)
    assert done == [0]


def test_a_failure_of_the_caller_waits_for_the_write_in_flight_and_is_the_one_raised() -> None:
    finished = threading.Event()

    def slow_write() -> None:
        time.sleep(0.2)
        finished.set()

    with pytest.raises(RuntimeError, match="classification failed"), WriteBehind("test-write") as behind:
        behind.submit(slow_write)
        raise RuntimeError("classification failed")
    assert finished.is_set(), "the write in flight ended before the block's error left"
