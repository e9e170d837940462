"""A case's nemesis (`nemesis: {every, faults, seed}`), run by the
coordinator during the case's run stage: the schedule (history/nemesis.py,
the same seed the same schedule) applied step by step through whatever
breaks this run's hosts (a `Target`: the fleet), each step recorded; and
whatever still holds when it stops, for any reason, put right: the network
healed, paused processes resumed. A killed process stays dead: restarting
it is the test's own business."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal, Protocol

from phalanx.coordinator.histories import Histories
from phalanx.history.nemesis import Step, parse_fault, schedule
from phalanx.model import Nemesis

log = logging.getLogger("phalanx.coordinator")

FAULT_TIMEOUT = 120.0  # seconds to make or heal one fault
Signal = Literal["STOP", "CONT", "KILL"]


class Target(Protocol):
    async def break_network(self, step: Step) -> None:
        """Start a partition, an isolation or a slow link; raises
        FaultError (or TimeoutError) saying why not."""
        ...

    async def heal_network(self) -> None: ...

    async def signal(self, host: str, name: str, signal: Signal) -> list[int]:
        """Send STOP, CONT or KILL to the case's processes `name` on
        `host`; the pids signalled. Raises FaultError saying why not."""
        ...


class NemesisRun:
    def __init__(
        self, steps: list[Step], target: Target, record: Callable[[str, str], None]
    ) -> None:
        """`record(f, what)`: a step was taken (`start`/`heal`, and what)."""
        self.steps = steps
        self.target = target
        self.record = record
        self.network_broken = False
        self.paused: dict[tuple[str, str], None] = {}  # (host, name), in order

    async def run(self) -> None:
        """Follow the schedule; raises what a step raised (FaultError...)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for step in self.steps:
            await asyncio.sleep(max(0.0, start + step.at - loop.time()))
            await self._take(step)

    async def _take(self, step: Step) -> None:
        kind = step.fault.kind
        what = step.what
        if kind in ("pause", "kill"):
            name = step.fault.arg
            if step.action == "start":
                sig: Signal = "STOP" if kind == "pause" else "KILL"
                if kind == "pause":
                    self.paused[(step.host, name)] = None  # before: resumed even if half made
                pids = await asyncio.wait_for(
                    self.target.signal(step.host, name, sig), FAULT_TIMEOUT
                )
                what = f"{what} (pid {', '.join(map(str, pids))})" if pids else f"{what} (none)"
            elif kind == "pause":
                await asyncio.wait_for(self.target.signal(step.host, name, "CONT"), FAULT_TIMEOUT)
                self.paused.pop((step.host, name), None)
                what = f"resume {name} on {step.host}"
            else:
                what = f"{name} on {step.host} left to the test to restart"
        elif step.action == "start":
            self.network_broken = True  # before: a fault half made is healed too
            await asyncio.wait_for(self.target.break_network(step), FAULT_TIMEOUT)
        else:
            await asyncio.wait_for(self.target.heal_network(), FAULT_TIMEOUT)
            self.network_broken = False
        self.record(step.action, what)

    async def restore(self) -> str | None:
        """Heal the network and resume what is paused; why not, or None."""
        problems: list[str] = []
        if self.network_broken:
            try:
                await asyncio.wait_for(self.target.heal_network(), FAULT_TIMEOUT)
                self.network_broken = False
                self.record("heal", "heal the network (the stage ended)")
            except Exception as exc:
                problems.append(f"healing the network failed: {exc or type(exc).__name__}")
        for host, name in list(self.paused):
            try:
                await asyncio.wait_for(self.target.signal(host, name, "CONT"), FAULT_TIMEOUT)
                self.record("heal", f"resume {name} on {host} (the stage ended)")
            except Exception as exc:
                problems.append(f"resuming {name} on {host} failed: {exc or type(exc).__name__}")
            del self.paused[(host, name)]
        return "; ".join(problems) or None


async def stop(task: asyncio.Task[None]) -> BaseException | None:
    """Stop a nemesis's run; what it failed with, if it failed."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except Exception as exc:
            return exc
    return None


@contextlib.asynccontextmanager
async def during(
    histories: Histories,
    case: str,
    hosts: Sequence[str],
    spec: Nemesis,
    duration: float,
    target: Target,
) -> AsyncIterator[None]:
    """Run the case's nemesis while the body runs; when it ends, however
    it ends, the network is healed and paused processes resumed. What it
    did, and what went wrong, goes into the case's history."""
    try:
        steps = schedule(
            [parse_fault(f) for f in spec.faults], list(hosts), spec.every, spec.seed, duration
        )
    except ValueError as exc:
        histories.nemesis_failed(case, str(exc))
        yield
        return

    def record(f: str, what: str) -> None:
        histories.fault(case, f, what, time.time())

    run = NemesisRun(steps, target, record)
    task = asyncio.ensure_future(run.run())
    try:
        yield
    finally:
        failed = await stop(task)
        if failed is not None:
            histories.nemesis_failed(case, str(failed) or type(failed).__name__)
        if (unrestored := await run.restore()) is not None:
            histories.nemesis_failed(case, unrestored)
