"""What a runner gets for one stage besides its task: the stage's
environment, where to work, how long it may take, where its output goes,
and a signal for a cancel."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from phalanx.host.process import GroupLedger
from phalanx.host.sandbox import Sandboxes


def new_signal() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def set_signal(signal: asyncio.Future[None]) -> None:
    if not signal.done():
        signal.set_result(None)


def no_backlog() -> asyncio.Future[None] | None:
    return None


@dataclass
class RunnerContext:
    stage_id: str
    scope: str  # the case (or the suite's stages) in its run: what ends its leftovers
    env: dict[str, str]  # the whole environment of the stage's processes
    cwd: Path  # the host's working directory
    scratch_root: Path  # scratch() makes this stage's folder below it, on demand
    timeout: float
    output: Callable[[bytes], None]  # the bytes the program wrote, as they come
    ledger: GroupLedger
    # Done when the coordinator cancels the stage (a future, not an Event:
    # runners watch it with a callback instead of a task each).
    cancelled: asyncio.Future[None] = field(default_factory=new_signal)
    sandboxes: Sandboxes | None = None  # tree tests' folders, shared by a run's workers
    # Asked after each piece of output: a future to wait for before reading
    # more (whoever takes the output is behind), or None to read on. Not
    # reading makes a program that writes faster than its output can travel
    # block on its pipe, so nothing between it and the run folder grows.
    backlog: Callable[[], asyncio.Future[None] | None] = no_backlog

    def scratch(self) -> Path:
        """This stage's own folder, made on first use (most stages need none,
        and a mkdir per stage is measurable on a barrier)."""
        path = self.scratch_root / re.sub(r"[^A-Za-z0-9_.-]", "_", self.stage_id)
        path.mkdir(parents=True, exist_ok=True)
        return path
