"""What of a VM goes with its run, when its hypervisor is another machine.

A VM's record (`vm.json`), serial console and QMP events are written where
its QEMU runs. The embedded hypervisor writes them into the run's folder;
a `phalanx hypervisor` daemon writes them into its own, so without this a
service run's document had no `vms` and its page no Machines table. When
the cluster goes down the daemon sends them back in its reply (`gather`)
and the coordinator puts them into the run's folder (`place`), where the
run's reports find them as they find the embedded hypervisor's.

The wire is bounded: each file travels as its tail, and the whole as at
most `BUDGET` bytes; what was cut is said at the file's head, with where
the whole file stays.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from pathlib import Path

log = logging.getLogger("phalanx.coordinator")

# The files that travel, and nothing else (a name from the wire is checked
# against these before it becomes a path).
FILES = ("vm.json", "console.log", "qmp-events.jsonl")
BUDGET = 4 * 1024 * 1024
PER_FILE = 512 * 1024

# host: file name: text
VmFiles = Mapping[str, Mapping[str, str]]


def gather(folder: Path, hosts: Collection[str], budget: int = BUDGET) -> dict[str, dict[str, str]]:
    """`folder`/HOST/FILE for each host, each file as its tail, the whole
    within `budget` bytes (the daemon's side)."""
    found: dict[str, dict[str, str]] = {}
    paths = [
        (host, name, folder / host / name)
        for host in hosts
        for name in FILES
        if (folder / host / name).is_file()
    ]
    if not paths:
        return found
    each = min(PER_FILE, budget // len(paths))
    for host, name, path in paths:
        text = _tail(path, each)
        if text is not None:
            found.setdefault(host, {})[name] = text
    return found


def _tail(path: Path, limit: int) -> str | None:
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - limit, 0))
            data = f.read(limit)
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    if size <= limit:
        return text
    if path.suffix == ".json":
        return None  # a record cut short is no record
    if "\n" in text:
        text = text.split("\n", 1)[1]  # from a whole line on
    return f"[{size - len(text.encode())} earlier bytes are in {path} on the hypervisor]\n{text}"


def place(files: object, hosts_folder: Path, hosts: Collection[str], source: str) -> list[str]:
    """Write `files` (a hypervisor's reply, not trusted) under
    `hosts_folder`/HOST/ for the cluster's `hosts` only and the known file
    names only; the hosts whose files were placed."""
    placed: list[str] = []
    if not isinstance(files, Mapping):
        return placed
    for host, kept in files.items():
        if host not in hosts or not isinstance(kept, Mapping):
            log.warning("hypervisor %s sent files for %r, not a host of the cluster", source, host)
            continue
        folder = hosts_folder / host
        for name, text in kept.items():
            if name not in FILES or not isinstance(text, str):
                continue
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
        placed.append(host)
    return placed
