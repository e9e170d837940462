"""Helpers for tests that watch real processes: is a pid still alive, wait
for a file a process writes, find the run folder a `phalanx run` made."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.eventually import NotYet, eventually


def alive(pid: int) -> bool:
    """Running, stopped or sleeping; a zombie waiting for its reaper is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether `pid` is dead within `within` seconds."""
    try:
        eventually(lambda: not alive(pid), within=within, what=f"pid {pid} ended")
    except NotYet:
        return False
    return True


def wait_for(paths: Path | Iterable[Path], proc: subprocess.Popen[str], within: float = 60) -> None:
    """Until every path exists; fails at once if `proc` ended first."""
    wanted = [paths] if isinstance(paths, Path) else list(paths)

    def there() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the process ended first: {proc.communicate()}")
        return all(p.exists() for p in wanted)

    eventually(there, within=within, what=f"{wanted}")


def run_folder(cwd: Path, proc: subprocess.Popen[str], within: float = 30) -> Path:
    """The one run folder `proc` (a `phalanx run` in `cwd`) makes."""

    def found() -> list[Path]:
        if proc.poll() is not None:
            raise RuntimeError(f"the process ended first: {proc.communicate()}")
        return list((cwd / "phalanx-results").glob("*"))

    (run,) = eventually(found, within=within, what="a run folder")
    return run
