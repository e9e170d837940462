"""`phalanx-op`: one client operation performed by a command and recorded.

    phalanx-op [--key K] [--timeout S] [--process P] write V -- CMD…
    phalanx-op --key K read -- CMD…          (CMD's stdout is the value read)
    phalanx-op --key K cas OLD:NEW -- CMD…
    phalanx-op add V -- CMD… | read-set -- CMD… | incr [N] -- CMD…

It records the invocation, runs CMD in its own process group (killed whole
on timeout), records `ok` (exit 0), `fail` (exit 1) or `info` (anything
else, a timeout), and exits with CMD's status (124 on a timeout, as
timeout(1) does). Inside a stage the records go to the coordinator through
the host's agent (the case's history); with $PHALANX_HISTORY set they are
also JSON lines appended to that file.

Standard library only: this starts on every operation, inside stages.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from phalanx.history.client import destination, process_name, record
from phalanx.history.record import Asked, asked, completed_value, outcome

EXIT_TIMEOUT = 124
EXIT_USAGE = 2
EXIT_NO_RECORD = 3  # the invocation could not be recorded: the command did not run


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
    why = "no command after `--`" if not command else destination()
    if why is not None:
        print(f"phalanx-op: {why}", file=sys.stderr)
        return EXIT_USAGE
    try:
        op: Asked = asked(args.op, args.value)
    except ValueError as exc:
        print(f"phalanx-op: {exc}", file=sys.stderr)
        return EXIT_USAGE
    base = {"process": process_name(args.process), "f": op.f, "key": args.key}
    sent = None if op.f in ("read", "read-set") else op.value
    try:
        record({**base, "type": "invoke", "value": sent, "time": time.time()})
    except OSError as exc:
        print(f"phalanx-op: {exc}", file=sys.stderr)
        return EXIT_NO_RECORD
    try:
        status, stdout = run(command, args.timeout)
    except OSError as exc:
        print(f"phalanx-op: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        status, stdout = 127, ""
    result = outcome(status)
    value = completed_value(op, result, stdout)
    try:
        record({**base, "type": result, "value": value, "time": time.time()})
    except OSError as exc:
        print(f"phalanx-op: {exc}", file=sys.stderr)
    sys.stdout.write(stdout)
    return EXIT_TIMEOUT if status is None else status


def entry() -> None:
    sys.exit(main(sys.argv[1:]))
