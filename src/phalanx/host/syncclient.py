"""`phalanx-sync`, `phalanx-send` and `phalanx-wait`: the in-stage
coordination commands. They ask the host's agent over its local socket, which
asks the coordinator; the answer is pushed back, never polled.

Standard library only: these start on every call, inside stages.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

EXIT_TIMEOUT = 1
EXIT_USAGE = 2
EXIT_NO_AGENT = 3


def request(message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """One request to the agent; raises TimeoutError or OSError."""
    path = os.environ.get("PHALANX_AGENT_SOCKET")
    if not path:
        raise OSError("PHALANX_AGENT_SOCKET is not set: not inside a phalanx stage")
    message = {**message, "stage_id": os.environ.get("PHALANX_STAGE_ID", "")}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("the agent closed the connection")
            reply += chunk
    answer: dict[str, Any] = json.loads(reply)
    return answer


def _default_timeout() -> float:
    return float(os.environ.get("PHALANX_STAGE_TIMEOUT", "600"))


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
