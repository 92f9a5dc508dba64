"""The architecture, written down once and enforced (docs/design.md, "Stages and packages").

``LAYERS`` lists the engine's packages lowest first, in the order data moves through them.
A module may import truesync modules of its own layer or a lower one, never a higher one,
and no chain of imports may lead back to where it started. Great Expectations is imported
only by the ``quality`` package, and the demo (``truesync.sandbox``) only by the sandbox
commands. The checks read the source with ``ast``; nothing is imported to find out.
"""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "include"
DAG_FILE = ROOT / "dags" / "truesync_flows.py"

# Lowest first. A module belongs to the first layer with a pattern matching its dotted name.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("support", ("truesync", "truesync.support", "truesync.support.*")),
    (
        "system kinds",  # what each kind accepts in systems.yaml: the configuration validates blocks with them
        (
            "truesync.connectors",
            "truesync.connectors.errors",
            "truesync.connectors.kind",
            "truesync.connectors.kinds",
            "truesync.connectors.sql",
            "truesync.connectors.rest",
            "truesync.connectors.file",
            "truesync.connectors.*.settings",
        ),
    ),
    ("config", ("truesync.config", "truesync.config.*")),
    ("core", ("truesync.core", "truesync.core.*")),
    ("connectors", ("truesync.connectors.*",)),
    ("store", ("truesync.store", "truesync.store.*")),
    ("quality", ("truesync.quality", "truesync.quality.*")),
    ("reporting", ("truesync.reporting", "truesync.reporting.*")),
    ("pipeline", ("truesync.pipeline", "truesync.pipeline.*")),
    ("sandbox", ("truesync.sandbox", "truesync.sandbox.*")),
    ("cli", ("truesync.cli", "truesync.preflight")),
)
GX_ALLOWED = ("truesync.quality.*",)
SANDBOX_USERS = ("truesync.cli", "truesync.sandbox", "truesync.sandbox.*")
SANDBOX_ONLY_LIBRARIES = ("faker", "uvicorn")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ENGINE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ENGINE / "truesync").rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The truesync module an import names (``from pkg import module`` names the module)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports(module: str) -> frozenset[str]:
    """Every module this one imports, at the top or inside a function (so a local import cannot hide a layer)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(modules()[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(found)


def truesync_imports(module: str) -> set[str]:
    known = modules()
    resolved = {_resolve(name, known) for name in imports(module) if name.split(".")[0] == "truesync"}
    return {r for r in resolved if r and r != module and not module.startswith(f"{r}.")}


def layer_of(module: str) -> int:
    for position, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return position
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def _matches(module: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(module, p) for p in patterns)


def test_every_module_imports_only_its_own_layer_or_lower() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {used} ({LAYERS[layer_of(used)][0]})"
        for module in modules()
        for used in sorted(truesync_imports(module))
        if layer_of(used) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """An import circle reachable from ``start`` (depth first), as the modules around it, or None."""
    trail: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in trail:
            return [*trail[trail.index(node) :], node]
        if node in done:
            return None
        trail.append(node)
        for following in sorted(graph.get(node, ())):
            if cycle := visit(following):
                return cycle
        done.add(trail.pop())
        return None

    return visit(start)


def test_no_import_circles() -> None:
    graph = {module: truesync_imports(module) for module in modules()}
    for module in graph:
        cycle = _cycle_from(module, graph)
        assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_circle() -> None:
    """Guards the guard: a circle of three is reported, a diamond is not."""
    assert _cycle_from("a", {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle_from("a", {"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_only_the_quality_package_imports_great_expectations() -> None:
    users = [m for m in modules() if any(n.split(".")[0] == "great_expectations" for n in imports(m))]
    assert users and all(_matches(m, GX_ALLOWED) for m in users), users


def test_the_demo_is_imported_only_by_the_sandbox_commands() -> None:
    for module in modules():
        demo = [m for m in truesync_imports(module) if m.startswith("truesync.sandbox.")]
        libraries = [n for n in imports(module) if n.split(".")[0] in SANDBOX_ONLY_LIBRARIES]
        if demo or libraries:
            assert _matches(module, SANDBOX_USERS), f"{module} imports {demo + libraries}"


def test_every_layer_is_declared_once_and_used() -> None:
    names = [name for name, _ in LAYERS]
    assert len(names) == len(set(names))
    used = {layer_of(m) for m in modules()}
    assert used == set(range(len(LAYERS))), [names[i] for i in set(range(len(LAYERS))) - used]


def test_the_scheduler_preloads_every_module_a_task_imports() -> None:
    """The LocalExecutor's workers start from a forkserver that imported ``TASK_MODULES``
    (``pipeline.dags.preloaded_workers``). Every module the DAG file imports, at its top or inside
    a task, is loaded once they are; and each of them imports (the forkserver would skip one that
    fails without a word, and every task would pay for it again)."""
    tree = ast.parse(DAG_FILE.read_text())
    used = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    used |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    used.add("great_expectations")  # quality imports it on first use, inside a task
    code = (
        "import importlib, sys; from truesync.pipeline.dags import TASK_MODULES;"
        "[importlib.import_module(m) for m in TASK_MODULES];"
        "print(sorted(m for m in sys.argv[1:] if m not in sys.modules))"
    )
    ran = subprocess.run([sys.executable, "-c", code, *sorted(used)], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("command", [["config", "check"], ["summary"]])
def test_production_commands_load_no_demo_code(command: list[str], tmp_path: Path) -> None:
    """``truesync config check`` and the like never load the demo's servers or fake data."""
    code = (
        "import sys; from truesync.cli import main; main(sys.argv[1:]);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('faker', 'uvicorn')"
        " or m.startswith('truesync.sandbox.')))"
    )
    env = {"TRUESYNC_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    ran = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "[]"
