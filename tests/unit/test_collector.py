"""``support.collector``: a stage runs with what was alive at its start frozen, and leaves nothing frozen."""

from __future__ import annotations

import gc

import pytest

from truesync.support.collector import setup_frozen


def test_a_stage_freezes_what_is_alive_and_unfreezes_it_when_it_ends() -> None:
    assert gc.get_freeze_count() == 0
    seen: list[int] = []

    @setup_frozen
    def stage(size: int) -> int:
        seen.append(gc.get_freeze_count())
        return size * 2

    assert stage(21) == 42
    assert seen[0] > 1_000  # the modules imported by now, at the least
    assert gc.get_freeze_count() == 0


def test_a_stage_inside_another_leaves_the_outer_ones_objects_frozen() -> None:
    seen: list[tuple[str, int]] = []

    @setup_frozen
    def inner() -> None:
        seen.append(("inner", gc.get_freeze_count()))

    @setup_frozen
    def outer() -> None:
        inner()
        seen.append(("outer after inner", gc.get_freeze_count()))

    outer()
    assert [name for name, _ in seen] == ["inner", "outer after inner"]
    assert all(count > 1_000 for _, count in seen), seen
    assert gc.get_freeze_count() == 0


def test_a_failing_stage_unfreezes_too_and_the_next_one_freezes_again() -> None:
    @setup_frozen
    def failing() -> None:
        raise RuntimeError("the source went away")

    with pytest.raises(RuntimeError, match="went away"):
        failing()
    assert gc.get_freeze_count() == 0

    @setup_frozen
    def next_stage() -> int:
        return gc.get_freeze_count()

    assert next_stage() > 1_000
    assert gc.get_freeze_count() == 0
