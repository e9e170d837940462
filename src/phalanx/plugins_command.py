"""`phalanx plugins`: every kind, task type, runner and provider phalanx
can find, where each comes from, and whether it loads: the one place to see
a plug-in's installation before a run trips on it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from phalanx.exits import EXIT_DEFINITIONS, EXIT_OK
from phalanx.plugins import BUILTIN, PluginError, Registry, UnknownPlugin


def registries() -> list[tuple[str, Registry[Any]]]:
    from phalanx.host.runners import RUNNERS
    from phalanx.kinds.registry import KINDS
    from phalanx.providers.registry import PROVIDERS
    from phalanx.tasks.registry import TASKS

    return [("kind", KINDS), ("task", TASKS), ("runner", RUNNERS), ("provider", PROVIDERS)]


def plugins(args: argparse.Namespace) -> int:
    """Kinds, task types, runners and providers: phalanx's own and installed plug-ins'.

    Each is loaded to check it; one that cannot be is shown with the reason,
    and the exit code is then 2."""
    rows: list[tuple[str, str, str, str, str]] = []
    problems: list[str] = []
    for what, registry in registries():
        mine: list[tuple[str, str, str, str, str]] = []
        for entry in registry.catalog.entries():
            if not args.all and entry.origin == BUILTIN:
                continue
            try:
                registry.get(entry.name)
            except (UnknownPlugin, PluginError) as exc:
                problems.append(str(exc))
                state = "cannot be loaded"
            else:
                state = "ok"
            mine.append((what, entry.name, entry.target, entry.origin, state))
        for entry in registry.catalog.shadowed():
            ignored = "ignored: phalanx has its own"
            mine.append((what, entry.name, entry.target, entry.origin, ignored))
        rows.extend(sorted(mine, key=lambda row: (row[1], row[3])))
    if not rows:
        print("no plug-ins installed (--all: phalanx's own too)")
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(4)]
    for *cells, state in rows:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + state)
    for problem in problems:
        print(f"error: {problem}")
    return EXIT_DEFINITIONS if problems else EXIT_OK


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[..., argparse.ArgumentParser],
) -> None:
    parser = command(commands, "plugins", plugins)
    parser.add_argument("--all", action="store_true", help="phalanx's own too")
