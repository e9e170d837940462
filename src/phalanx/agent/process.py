"""Process groups: every stage runs in a session of its own, so that a
timeout or a shutdown ends the whole tree it started, grandchildren included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def kill_group(pgid: int, grace: float = KILL_GRACE) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after `grace`."""
    signal_group(pgid, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + grace
    while group_alive(pgid) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    signal_group(pgid, signal.SIGKILL)


class GroupLedger:
    """The process groups an agent started, on disk, so that whoever cleans up
    after an agent killed with -9 (the provider) can still end them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.groups: set[int] = set()
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, pgid: int) -> None:
        self.groups.add(pgid)
        with self.path.open("a") as f:
            f.write(f"{pgid}\n")

    def kill_all(self) -> None:
        for pgid in self.groups | read_ledger(self.path):
            signal_group(pgid, signal.SIGKILL)


def read_ledger(path: Path) -> set[int]:
    try:
        return {int(line) for line in path.read_text().split() if line.isdigit()}
    except FileNotFoundError:
        return set()


def ledger_path(workdir: Path) -> Path:
    return workdir / ".phalanx" / "groups"
