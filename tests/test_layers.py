"""The package's layering, read from the import statements of every module
(inside functions too): the pure core never reaches out to the edges, and no
two top-level packages import each other, directly or round a longer loop.

The root `phalanx/__init__.py` is the facade Python tests call
(`phalanx.sync`); it may reach anything and is left out.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import phalanx

ROOT = Path(phalanx.__file__).parent

# What decides and describes a run, without doing its I/O.
CORE = {
    "model",
    "tasks",
    "events",
    "tags",
    "layout",
    "exits",
    "load",
    "kinds",
    "engine",
    "combinatorial",
    "board",
    "codec",  # records as JSON types and back: no I/O
    "plugins",  # finding kinds, task types, runners and providers by name
    "providernames",  # phalanx's own providers' names (the model's, light for the cli)
    "keywords",  # -k EXPR, read and matched
    "history",  # operation histories and the checkers that judge them
    "stagesocket",  # a stage's request to its agent (what phalanx.history.op records through)
}
# Where things run or meet the outside world.
EDGES = {
    "service",
    "host",
    "coordinator",
    "providers",
    "console",
    "cli",
    "plugins_command",  # `phalanx plugins`
    "argtypes",
    "tree",
    "store",
    "wire",
    "report",
    "net",  # phalanx.net: the facade Python tests break the network with
    "vm",  # phalanx.vm: the facade Python tests migrate VMs with
    "hypervisor",  # `phalanx hypervisor` and the embedded one: runs VMs for a coordinator
    "check",  # `phalanx check`: history files checked offline
    "virt",  # phalanx.virt: VM tests drive QEMU guests (providers) from a host
    "loops",  # the event loop a long-lived process runs (uvloop where installed)
}


def _top(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def imports() -> dict[str, set[str]]:
    """Top-level package → the top-level packages its modules import."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        source = _top(path)
        if source == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "phalanx" and len(parts) > 1 and parts[1] != source:
                    graph[source].add(parts[1])
    return graph


def test_every_top_level_package_is_classified():
    found = {_top(p) for p in ROOT.rglob("*.py")} - {"__init__", "__main__", "aio"}
    assert found <= CORE | EDGES, f"classify {sorted(found - CORE - EDGES)} in this test"


def test_the_core_never_imports_the_edges():
    graph = imports()
    leaks = {f"{src} -> {dst}" for src in CORE for dst in graph.get(src, ()) if dst in EDGES}
    assert not leaks, sorted(leaks)


def test_no_import_cycle_between_top_level_packages():
    graph = imports()

    def reaches(start: str, goal: str) -> list[str] | None:
        stack, seen = [(start, [start])], {start}
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == goal:
                    return [*path, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = {" -> ".join(c) for src in graph if (c := reaches(src, src))}
    assert not cycles, sorted(cycles)
