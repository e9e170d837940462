"""Agent-side task runners. A case kind names a runner in its Task's `type`;
the agent looks it up here. New kinds add a runner; the agent loop stays."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phalanx.agent.process import GroupLedger
from phalanx.agent.sandbox import Sandboxes


def new_signal() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def set_signal(signal: asyncio.Future[None]) -> None:
    if not signal.done():
        signal.set_result(None)


@dataclass
class RunnerContext:
    stage_id: str
    payload: dict[str, Any]
    env: dict[str, str]  # the whole environment of the stage's processes
    cwd: Path  # the host's working directory
    scratch_root: Path  # scratch() makes this stage's folder below it, on demand
    timeout: float
    output: Callable[[str], None]
    ledger: GroupLedger
    # Done when the coordinator cancels the stage (a future, not an Event:
    # runners watch it with a callback instead of a task each).
    cancelled: asyncio.Future[None] = field(default_factory=new_signal)
    sandboxes: Sandboxes | None = None  # tree tests' folders, shared by a run's workers

    def scratch(self) -> Path:
        """This stage's own folder, made on first use (most stages need none,
        and a mkdir per stage is measurable on a barrier)."""
        path = self.scratch_root / re.sub(r"[^A-Za-z0-9_.-]", "_", self.stage_id)
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class RunnerResult:
    exit_code: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None
    data: Any = None


Runner = Callable[[RunnerContext], Awaitable[RunnerResult]]

_RUNNERS: dict[str, Runner] = {}


def register(name: str, runner: Runner) -> None:
    _RUNNERS[name] = runner


def get(name: str) -> Runner | None:
    if not _RUNNERS:
        from phalanx.agent import executable, pyrunner, shell

        register("shell", shell.run_shell)
        register("python", pyrunner.run_python)
        register("walks", pyrunner.run_walks)
        register("executable", executable.run_executable)
    return _RUNNERS.get(name)
