"""The source text of the Python modules a `python` or `walks` case names.

Sources travel to the agents inside the task, so a test class runs on a host
that has only phalanx installed, and no pickled object ever crosses the wire.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# combinatorial.generate.STRATEGIES, spelled out: importing that package for a
# name would pull its executors into every load.
WALK_STRATEGIES = ("product", "pairwise", "random")


class ModuleError(ValueError):
    pass


def sources(options: Mapping[str, Any], search: Iterable[Path]) -> dict[str, str]:
    """Module name → source, for every `module:Class` in the case's `class`/`classes`."""
    spec = options.get("class", options.get("classes"))
    specs = [spec] if isinstance(spec, str) else spec
    if not isinstance(specs, list) or not specs or not all(isinstance(s, str) for s in specs):
        raise ModuleError("a python case names its test as `class: module:ClassName` (or a list)")
    folders = list(search)
    found: dict[str, str] = {}
    for item in specs:
        module, _, name = item.partition(":")
        if not module or not name:
            raise ModuleError(f"{item!r}: expected module:ClassName")
        if module in found:
            continue
        found[module] = read(module, folders)
    return found


def read(module: str, folders: list[Path]) -> str:
    """The source of `module`, from the first of `folders` that holds it."""
    relative = Path(*module.split("."))
    for folder in folders:
        for path in (folder / relative.with_suffix(".py"), folder / relative / "__init__.py"):
            if path.is_file():
                try:
                    return path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ModuleError(f"cannot read {path}: {exc}") from None
    looked = ", ".join(str(f) for f in folders)
    raise ModuleError(f"module {module!r} not found (looked in {looked})")


def walks_sources(options: Mapping[str, Any], search: Iterable[Path]) -> dict[str, str]:
    """Module name -> source of the case's actions module, after checking the
    case's walks keys; raises ModuleError saying what is wrong."""
    module = options.get("module")
    if not isinstance(module, str) or not module:
        raise ModuleError("a walks case names its actions module: `module: NAME`")
    order = options.get("order")
    if not isinstance(order, list) or not order or not all(isinstance(o, str) for o in order):
        raise ModuleError("a walks case lists its actions in `order: [Class, ...]`")
    strategy = str(options.get("strategy", "product"))
    if strategy.partition(":")[0] not in WALK_STRATEGIES:
        raise ModuleError(f"strategy {strategy!r}: expected product, pairwise or random:N")
    source = read(module, list(search))
    defined = _classes(module, source)
    missing = [o for o in order if ":" not in o and o not in defined]
    if missing:
        raise ModuleError(f"module {module!r} defines no class {', '.join(missing)}")
    return {module: source}


def _classes(module: str, source: str) -> set[str]:
    """The top-level names `source` binds to classes or imports (read, not run:
    the loader runs no test code)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ModuleError(f"module {module!r}: {exc}") from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names
