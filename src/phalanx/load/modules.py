"""Reading the source of the Python modules a case names (`python` classes,
`walks` actions), for its kind to check and ship.

Sources travel to the agents inside the task, so a test class runs on a host
that has only phalanx installed, and no pickled object ever crosses the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from phalanx.kinds.base import ReadError


def read(module: str, folders: Iterable[Path]) -> str:
    """The source of `module`, from the first of `folders` that holds it."""
    relative = Path(*module.split("."))
    searched = list(folders)
    for folder in searched:
        for path in (folder / relative.with_suffix(".py"), folder / relative / "__init__.py"):
            if path.is_file():
                try:
                    return path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ReadError(f"cannot read {path}: {exc}") from None
    looked = ", ".join(str(f) for f in searched)
    raise ReadError(f"module {module!r} not found (looked in {looked})")


def reader(folders: Iterable[Path]) -> Callable[[str], str]:
    """`read` bound to `folders`, each module read once."""
    searched = tuple(folders)
    cache: dict[str, str] = {}

    def read_module(module: str) -> str:
        if module not in cache:
            cache[module] = read(module, searched)
        return cache[module]

    return read_module
