"""The source text of the Python test modules a `python` case names.

Sources travel to the agents inside the task, so a test class runs on a host
that has only phalanx installed, and no pickled object ever crosses the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


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
        found[module] = _read(module, folders)
    return found


def _read(module: str, folders: list[Path]) -> str:
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


def read(module: str, folders: list[Path]) -> str:
    """The source of `module`, from the first of `folders` that holds it."""
    return _read(module, folders)
