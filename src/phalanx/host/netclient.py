"""`phalanx-net`: network faults from inside a stage (Jepsen's nemesis).

    phalanx-net partition a,b c,d   hosts of one group reach only each other
    phalanx-net isolate c           c reaches no other host
    phalanx-net slow c 200ms        every packet c sends waits 200 ms more
    phalanx-net heal                undo every fault

The request goes to the host's agent over its local socket, and from there
to the coordinator, which applies it through the run's provider and answers
once it holds. Standard library only, like `phalanx-sync`.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from phalanx.host.syncclient import EXIT_NO_AGENT, EXIT_USAGE, _default_timeout, request

EXIT_REFUSED = 1
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_DELAY = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s)\s*")


def parse_delay(value: float | int | str) -> float:
    """Seconds, from a number of seconds or a text with its unit (`200ms`,
    `1.5s`, `300us`). Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a delay: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DELAY.fullmatch(value)
        if match is None:
            raise ValueError(f"not a delay: {value!r} (give a number and a unit: 200ms, 1.5s)")
        seconds = float(match[1]) * UNITS[match[2]]
    if not 0 <= seconds < 3600:
        raise ValueError(f"a delay is between 0 and an hour, not {value!r}")
    return seconds


def parse_group(text: str) -> list[str]:
    """`a,b` → ["a", "b"]. Raises ValueError."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"not a group of hosts: {text!r} (names joined by commas: a,b)")
    return names


def ask(message: dict[str, Any], timeout: float | None = None) -> str | None:
    """Send one fault request; None when done, else why not. Raises OSError
    (no agent) and TimeoutError."""
    answer = request({"op": "net", **message}, timeout or _default_timeout())
    if answer.get("ok"):
        return None
    return str(answer.get("error") or "refused")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phalanx-net",
        description="Break the network between this run's hosts (netns hosts only). "
        "Every fault is healed when the case ends.",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds (default: the stage timeout)"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    partition = actions.add_parser(
        "partition",
        help="hosts of one group reach only each other; a host in no group reaches no one",
    )
    partition.add_argument("groups", nargs="+", metavar="GROUP", help="hosts joined by commas")
    isolate = actions.add_parser("isolate", help="HOST reaches no other host")
    isolate.add_argument("host", metavar="HOST")
    slow = actions.add_parser("slow", help="delay every packet HOST sends")
    slow.add_argument("host", metavar="HOST")
    slow.add_argument("delay", metavar="DELAY", help="with its unit: 200ms, 1.5s")
    actions.add_parser("heal", help="undo every fault")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    message: dict[str, Any] = {"action": args.action}
    try:
        if args.action == "partition":
            message["groups"] = [parse_group(group) for group in args.groups]
        elif args.action in ("isolate", "slow"):
            message["host"] = args.host
        if args.action == "slow":
            message["delay"] = parse_delay(args.delay)
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"phalanx-net: {exc}", file=sys.stderr)
        return EXIT_USAGE
    timeout = args.timeout or _default_timeout()
    try:
        refused = ask(message, timeout)
    except TimeoutError:
        print(f"phalanx-net: no answer within {timeout:g}s", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(f"phalanx-net: cannot reach the agent: {exc}", file=sys.stderr)
        return EXIT_NO_AGENT
    if refused is not None:
        print(f"phalanx-net: {refused}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def entry() -> None:
    sys.exit(main(sys.argv[1:]))
