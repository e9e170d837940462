"""`phalanx-sync`, `phalanx-send` and `phalanx-wait`: the in-stage
coordination commands. They ask the host's agent over its local socket, which
asks the coordinator; the answer is pushed back, never polled.

Standard library only: these start on every call, inside stages.
"""

from __future__ import annotations

import argparse
import os
import sys

from phalanx.stagesocket import _default_timeout, request

__all__ = ["EXIT_NO_AGENT", "EXIT_TIMEOUT", "EXIT_USAGE", "_default_timeout", "main", "request"]

EXIT_TIMEOUT = 1
EXIT_USAGE = 2
EXIT_NO_AGENT = 3


def main(command: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"phalanx-{command}")
    if command == "sync":
        parser.description = "Wait until every host of this stage reached the barrier NAME."
        parser.add_argument("name")
    elif command == "send":
        parser.description = "Publish KEY (with VALUE) to every host of this case."
        parser.add_argument("key")
        parser.add_argument("value", nargs="?", default="")
    elif command == "wait":
        parser.description = "Block until some host sent KEY; print its VALUE."
        parser.add_argument("key")
    else:
        print(f"phalanx: unknown coordination command {command!r}", file=sys.stderr)
        return EXIT_USAGE
    if command != "send":
        parser.add_argument(
            "--timeout", type=float, default=None, help="seconds (default: the stage timeout)"
        )
    args = parser.parse_args(argv)
    timeout = getattr(args, "timeout", None) or _default_timeout()
    if command == "sync":
        message = {"op": "sync", "name": args.name}
    elif command == "send":
        message = {"op": "send", "key": args.key, "value": args.value}
    else:
        message = {"op": "wait", "key": args.key}
    try:
        answer = request(message, timeout)
    except TimeoutError:
        what = args.name if command == "sync" else args.key
        print(
            f"phalanx-{command}: timed out after {timeout:g}s waiting for {what!r}", file=sys.stderr
        )
        return EXIT_TIMEOUT
    except OSError as exc:
        print(f"phalanx-{command}: cannot reach the agent: {exc}", file=sys.stderr)
        return EXIT_NO_AGENT
    if not answer.get("ok"):
        print(f"phalanx-{command}: {answer.get('error', 'refused')}", file=sys.stderr)
        return EXIT_TIMEOUT
    if command == "wait":
        print(answer.get("value", ""))
    return 0


def entry() -> None:
    name = os.path.basename(sys.argv[0]).removeprefix("phalanx-")
    sys.exit(main(name, sys.argv[1:]))
