"""One command for a stage, start to end: spawned in a process group of its
own, output streamed as the bytes it wrote (nothing on the host decodes
it), stopped with its whole group on a timeout, a stretch of silence or a
cancel.

Every runner that starts a process (shell scripts, tree tests, Python
children) goes through here, so the rules are the same for all of them.
Waiting is done with callbacks on one future rather than a task per
condition: a trivial tree test costs about a millisecond, and a task and a
timer loop per test were a third of that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from phalanx.host.context import RunnerContext
from phalanx.host.process import Child, end_scope, kill_group, spawn
from phalanx.tasks import Outcome

DRAIN_AFTER_EXIT = 0.2  # seconds to wait for output still in the pipe after the exit
# How long output still in the pipe after the exit may wait for a backlog
# downstream to clear: output is not given up for a slow consumer, within reason.
BACKLOG_AFTER_EXIT = 60.0

Verdict = Literal["exited", "timeout", "inactive", "cancelled"]


async def run_command(
    ctx: RunnerContext,
    command: list[str],
    *,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    inactivity: float | None = None,
    end_group: bool = False,
) -> Outcome:
    """Run `command` (in `cwd`, default the host's; with `env`, default the
    stage's). `inactivity`: seconds without output after which the group is
    killed. `end_group`: once the command exits, kill what it left running
    in its group or that left the group (tree tests must not hand daemons
    to the next test; a stage script that starts a server for later stages
    must: its scope, the case, ends it)."""
    loop = asyncio.get_running_loop()
    last_output = loop.time()
    child: Child | None = None
    paused: asyncio.Future[None] | None = None

    def on_output(data: bytes) -> None:
        nonlocal last_output, paused
        last_output = loop.time()
        ctx.output(data)
        if paused is None and (wait := ctx.backlog()) is not None and child is not None:
            paused = wait
            child.pause_output()
            wait.add_done_callback(resume)

    def resume(_: object) -> None:
        nonlocal paused, last_output
        paused, last_output = None, loop.time()
        if child is not None:
            child.resume_output()

    def silent_since() -> float:
        # A program blocked on a pipe nobody reads is not silent.
        return loop.time() if paused is not None else last_output

    try:
        child = spawn(command, cwd or ctx.cwd, ctx.env if env is None else env, on_output)
    except OSError as exc:
        return Outcome(error=f"cannot start {command[0]}: {exc}")
    ctx.ledger.add(child.pid, ctx.scope)
    verdict = await supervise(child, ctx.timeout, ctx.cancelled, inactivity, silent_since)
    if end_group:  # the group, and what left it carrying the stage's scope
        await end_scope(ctx.scope, ctx.ledger.take(ctx.scope))
    # Background processes the command left running may hold the pipe; it
    # stays open and read (so they never die of SIGPIPE) but is not waited for.
    await drain(child, paused=lambda: paused)
    data = None
    if verdict == "inactive":
        data = {"timeout": f"no output for {inactivity:g}s; its process group was killed"}
    returncode = child.returncode
    return Outcome(
        exit_code=shell_exit_code(returncode),
        signal=-returncode if returncode is not None and returncode < 0 else None,
        timed_out=verdict in ("timeout", "inactive"),
        cancelled=verdict == "cancelled",
        data=data,
    )


async def supervise(
    child: Child,
    timeout: float,
    cancelled: asyncio.Future[None],
    inactivity: float | None = None,
    last_output: Callable[[], float] | None = None,
) -> Verdict:
    """Wait for the exit, the timeout, `inactivity` seconds after the last
    output, or `cancelled`, whichever comes first. On anything but the exit,
    kill the group and wait for the exit."""
    loop = asyncio.get_running_loop()
    if child.exited.done():
        return "exited"
    verdict: asyncio.Future[Verdict] = loop.create_future()

    def settle(why: Verdict) -> None:
        if not verdict.done():
            verdict.set_result(why)

    def on_exit(_: object) -> None:
        settle("exited")

    def on_cancel(_: object) -> None:
        settle("cancelled")

    timers = [loop.call_later(timeout, settle, "timeout")]
    if inactivity is not None:
        silent_since = last_output or loop.time

        def check_silence() -> None:
            due = silent_since() + inactivity
            if loop.time() >= due:
                settle("inactive")
            else:
                timers.append(loop.call_at(due, check_silence))

        timers.append(loop.call_later(inactivity, check_silence))
    child.exited.add_done_callback(on_exit)
    cancelled.add_done_callback(on_cancel)
    try:
        why = await verdict
    finally:
        child.exited.remove_done_callback(on_exit)
        cancelled.remove_done_callback(on_cancel)
        for timer in timers:
            timer.cancel()
    if why != "exited":
        await kill_group(child.pid)
        await child.exited
    return why


async def drain(
    child: Child,
    grace: float = DRAIN_AFTER_EXIT,
    paused: Callable[[], asyncio.Future[None] | None] = lambda: None,
) -> bool:
    """Give the output pipe `grace` seconds of reading to close after the
    exit; whether it did. While reading is `paused` (a backlog downstream),
    the grace waits too, up to BACKLOG_AFTER_EXIT in all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BACKLOG_AFTER_EXIT
    while not child.output_closed.done():
        backlog = paused()
        if backlog is not None:
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.wait({backlog}, timeout=left)
            continue
        await asyncio.wait({child.output_closed}, timeout=grace)
        if paused() is None:
            break  # a whole grace of reading, and the pipe is still open
    return child.output_closed.done()


def shell_exit_code(returncode: int | None) -> int | None:
    """As a shell reports it: a death by signal N is 128 + N."""
    if returncode is None or returncode >= 0:
        return returncode
    return 128 - returncode
