"""The benchmarks' own code (``bench/*.py``) for the tests that run it on small workloads."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from truesync.support.paths import PROJECT_ROOT


def load_bench(name: str) -> ModuleType:
    """``bench/<name>.py`` as the module ``truesync_bench_<name>``, loaded from its path (``bench/`` is not
    a package)."""
    spec = importlib.util.spec_from_file_location(f"truesync_bench_{name}", PROJECT_ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module
