"""Finding a Python to run the agent with on a host phalanx does not
control (an SSH machine, a container image): CPython >= 3.11, the system's
own `python3` first."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

MIN_PYTHON = (3, 11)
PYTHONS = ("python3", "python3.14", "python3.13", "python3.12", "python3.11")

# A shell script: every interpreter found, one line each: implementation,
# version, machine, path.
FIND_PYTHONS = (
    "for p in " + " ".join(PYTHONS) + "; do "
    'command -v "$p" >/dev/null 2>&1 && "$p" -c '
    + shlex.quote(
        "import platform, sys; "
        "print(sys.implementation.name, '%d.%d' % sys.version_info[:2], "
        "platform.machine(), sys.executable)"
    )
    + " 2>/dev/null; done; exit 0"
)


@dataclass(frozen=True)
class RemotePython:
    path: str
    version: tuple[int, int]
    machine: str


def choose_python(listing: str) -> RemotePython | str:
    """The interpreter to run the agent with, from `FIND_PYTHONS`'s output;
    or why there is none."""
    found: list[RemotePython] = []
    for line in listing.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) != 4 or parts[0] != "cpython":
            continue
        major, _, minor = parts[1].partition(".")
        if major.isdigit() and minor.isdigit():
            found.append(RemotePython(parts[3], (int(major), int(minor)), parts[2]))
    usable = [p for p in found if p.version >= MIN_PYTHON]
    if usable:
        return usable[0]  # python3 first: the system's own when it will do
    seen = ", ".join(sorted({f"{p.path} ({p.version[0]}.{p.version[1]})" for p in found}))
    wanted = f"Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]}"
    return f"no {wanted} (found {seen})" if seen else f"no {wanted} (no python3 at all)"
