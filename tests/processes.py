"""Helpers for tests that watch real processes: is a pid still alive, wait
for a file a process writes, find the run folder a `phalanx run` made."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


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
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for(paths: Path | Iterable[Path], proc: subprocess.Popen[str], within: float = 60) -> None:
    """Until every path exists; fails at once if `proc` ended first."""
    wanted = [paths] if isinstance(paths, Path) else list(paths)
    deadline = time.monotonic() + within
    while not all(p.exists() for p in wanted):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"never appeared: {wanted}"
        time.sleep(0.05)


def run_folder(cwd: Path, proc: subprocess.Popen[str], within: float = 30) -> Path:
    """The one run folder `proc` (a `phalanx run` in `cwd`) makes."""
    deadline = time.monotonic() + within
    while not (runs := list((cwd / "phalanx-results").glob("*"))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no run folder"
        time.sleep(0.05)
    (run,) = runs
    return run
