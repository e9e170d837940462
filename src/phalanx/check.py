"""`phalanx check`: a history file checked against a model, offline.

Exit 0: valid; 1: invalid (each bad key's window printed); 2: a file could
not be read (the message names file, line and key).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[..., argparse.ArgumentParser],
) -> None:
    parser = command(commands, "check", check)
    parser.add_argument(
        "--model",
        required=True,
        choices=("register", "set", "counter"),
        help="register: read/write/cas, linearizable per key; set: add/read; counter: incr/read",
    )
    parser.add_argument(
        "--format",
        choices=("jsonl", "edn", "jepsen-log"),
        help="the files' format (default: from the name or the content)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="check the files as one history (one file per host), in time order",
    )
    parser.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="also draw each invalid key's window as a per-client timeline in this page",
    )
    parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="phalanx's history.jsonl, Jepsen's history.edn or jepsen.log",
    )


def check(args: argparse.Namespace) -> int:
    """Check histories against a model (exit 0 valid, 1 invalid, 2 unreadable)."""
    import sys

    from phalanx.history import formats
    from phalanx.history.models import MODELS
    from phalanx.history.ops import Event, HistoryError, pair
    from phalanx.history.text import lines

    worst = EXIT_VALID
    histories: list[tuple[str, list[Event]]] = []
    for path in args.files:
        try:
            text = path.read_text(encoding="utf-8")
            histories.append((str(path), formats.parse(text, str(path), args.format)))
        except (OSError, UnicodeDecodeError) as exc:
            print(f"phalanx check: {path}: cannot read: {exc}", file=sys.stderr)
            worst = EXIT_UNREADABLE
        except HistoryError as exc:
            print(f"phalanx check: {exc}", file=sys.stderr)
            worst = EXIT_UNREADABLE
    if args.merge and histories:
        merged = sorted((e for _, events in histories for e in events), key=lambda e: e.time)
        histories = [(" + ".join(name for name, _ in histories), merged)]
    for name, events in histories:
        try:
            verdict = MODELS[args.model](pair(events))
        except (HistoryError, ValueError) as exc:
            print(f"phalanx check: {exc}", file=sys.stderr)
            worst = EXIT_UNREADABLE
            continue
        for line in lines(verdict):
            print(f"{name}: {line}" if line == verdict.summary() else line)
        if args.html:
            from phalanx.history.picture import page

            # One page: with several files (not merged) the last one's.
            args.html.write_text(page(name, verdict), encoding="utf-8")
        if not verdict.valid and worst == EXIT_VALID:
            worst = EXIT_INVALID
    return worst
