"""Python's cyclic garbage collector during a stage: it walks the chunks' objects, not the imports.

A stage allocates millions of short-lived containers (query rows, records, frames). Each
time enough of them outlive a young collection, CPython 3.11 runs a full collection, and a
full collection walks every tracked object of the process: the modules, classes and
functions of Airflow, Great Expectations, SQLAlchemy and pandas, some 300,000 objects that
are never garbage. On ``bench/anchor.py`` (three runs of a 165,000-record delta) full
collections took 9 of the process's CPU seconds.

``setup_frozen`` moves the objects alive when a stage begins into the collector's permanent
generation (``gc.freeze``) and back when the stage ends (``gc.unfreeze``), as the Python
documentation describes for long-lived objects. The collector keeps collecting the chunks'
own cycles, and nothing that was alive at the start is kept from it once the stage is over.
A stage called inside another (``compare_entity`` stages its repairs) changes nothing: the
outermost one freezes and unfreezes. Stages run on one thread; their helper threads
(``support.overlap``) never enter one.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_depth = 0  # stages entered and not yet left


def setup_frozen(stage: Callable[P, R]) -> Callable[P, R]:
    """Run ``stage`` with the objects alive at its start out of the collector's reach (module docstring)."""

    @functools.wraps(stage)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        global _depth
        if _depth == 0:
            gc.freeze()
        _depth += 1
        try:
            return stage(*args, **kwargs)
        finally:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()

    return run
