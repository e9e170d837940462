"""What `phalanx-op` records, decided without I/O: the operation asked for,
the value its invocation carries, the outcome of the command that performed
it and the value its completion carries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# op name → whether it takes an argument
OPERATIONS = {
    "write": True,
    "read": False,
    "cas": True,
    "add": True,
    "read-set": False,
    "incr": False,  # optional: the amount, 1 by default
}

EXIT_FAIL = 1
"""A command's exit status that says the operation certainly did not happen."""


@dataclass(frozen=True)
class Asked:
    f: str
    value: Any


def value_of(text: str) -> Any:
    """A value from the command line or a read's output: JSON when it is
    (so `3` is a number and `null` nothing), the text otherwise."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def asked(f: str, arg: str | None) -> Asked:
    """The operation as invoked; raises ValueError saying what is wrong."""
    if f not in OPERATIONS:
        raise ValueError(f"unknown operation {f!r} (one of {', '.join(OPERATIONS)})")
    if f == "incr":
        return Asked(f, 1 if arg is None else value_of(arg))
    if OPERATIONS[f] and arg is None:
        raise ValueError(f"{f} needs a value")
    if not OPERATIONS[f] and arg is not None:
        raise ValueError(f"{f} takes no value (got {arg!r})")
    if f == "cas":
        old, sep, new = str(arg).partition(":")
        if not sep:
            raise ValueError(f"cas takes OLD:NEW, not {arg!r}")
        return Asked(f, [value_of(old), value_of(new)])
    return Asked(f, None if arg is None else value_of(arg))


def outcome(returncode: int | None) -> str:
    """ok (exit 0), fail (exit 1: did not happen), info (anything else, or
    no status at all: a timeout, a lost host; it may have happened)."""
    if returncode == 0:
        return "ok"
    if returncode == EXIT_FAIL:
        return "fail"
    return "info"


def completed_value(op: Asked, result: str, stdout: str) -> Any:
    """A completed read carries what the command printed (a set's elements
    one per whitespace-separated word); the others carry what was sent."""
    if result != "ok":
        return None if op.f in ("read", "read-set") else op.value
    if op.f == "read":
        # Nothing printed: nothing there (an unset key), as a fresh register.
        return value_of(stdout.strip()) if stdout.strip() else None
    if op.f == "read-set":
        return [value_of(word) for word in stdout.split()]
    return op.value
