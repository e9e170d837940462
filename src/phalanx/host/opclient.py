"""`phalanx-op`: one client operation performed by a command and recorded.

    phalanx-op [--key K] [--timeout S] [--process P] write V -- CMD…
    phalanx-op --key K read -- CMD…          (CMD's stdout is the value read)
    phalanx-op --key K cas OLD:NEW -- CMD…
    phalanx-op add V -- CMD… | read-set -- CMD… | incr [N] -- CMD…

It records the invocation, runs CMD in its own process group (killed whole
on timeout), records `ok` (exit 0), `fail` (exit 1) or `info` (anything
else, a timeout), and exits with CMD's status (124 on a timeout, as
timeout(1) does). Records are JSON lines appended to $PHALANX_HISTORY.

Standard library only: this starts on every operation, inside stages.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from phalanx.history.client import HISTORY_ENV, append, process_name
from phalanx.history.record import Asked, asked, completed_value, outcome

EXIT_TIMEOUT = 124
EXIT_USAGE = 2


def run(command: list[str], timeout: float | None) -> tuple[int | None, str]:
    """CMD's exit status (None on timeout) and its stdout."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, start_new_session=True)
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return None, ""
    return child.returncode, out.decode(errors="replace")


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("phalanx-op: the command goes after `--`", file=sys.stderr)
        return EXIT_USAGE
    split = argv.index("--")
    mine, command = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="phalanx-op", description="Perform one operation with a command and record it."
    )
    parser.add_argument("--key", help="the key (register, set or counter) operated on")
    parser.add_argument("--timeout", type=float, help="seconds before the command is killed")
    parser.add_argument("--process", help="the client's name (default: $PHALANX_CLIENT)")
    parser.add_argument("op", help="write, read, cas, add, read-set or incr")
    parser.add_argument("value", nargs="?", help="the operation's value (cas: OLD:NEW)")
    args = parser.parse_args(mine)
    path = os.environ.get(HISTORY_ENV)
    if not command or not path:
        print(
            "phalanx-op: no command after `--`"
            if not command
            else f"phalanx-op: ${HISTORY_ENV} is not set",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        op: Asked = asked(args.op, args.value)
    except ValueError as exc:
        print(f"phalanx-op: {exc}", file=sys.stderr)
        return EXIT_USAGE
    base = {"process": process_name(args.process), "f": op.f, "key": args.key}
    sent = None if op.f in ("read", "read-set") else op.value
    append(path, {**base, "type": "invoke", "value": sent, "time": time.time()})
    try:
        status, stdout = run(command, args.timeout)
    except OSError as exc:
        print(f"phalanx-op: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        status, stdout = 127, ""
    result = outcome(status)
    value = completed_value(op, result, stdout)
    append(path, {**base, "type": result, "value": value, "time": time.time()})
    sys.stdout.write(stdout)
    return EXIT_TIMEOUT if status is None else status


def entry() -> None:
    sys.exit(main(sys.argv[1:]))
