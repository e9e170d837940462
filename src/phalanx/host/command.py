"""One command for a stage, start to end: spawned in a process group of its
own, output decoded and streamed, stopped with its whole group on a
timeout, a stretch of silence or a cancel.

Every runner that starts a process (shell scripts, tree tests, Python
children) goes through here, so the rules are the same for all of them.
Waiting is done with callbacks on one future rather than a task per
condition: a trivial tree test costs about a millisecond, and a task and a
timer loop per test were a third of that.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from phalanx.host.context import RunnerContext
from phalanx.host.process import Child, end_scope, kill_group, scope_of, spawn
from phalanx.tasks import Outcome

DRAIN_AFTER_EXIT = 0.2  # seconds to wait for output still in the pipe after the exit

Verdict = Literal["exited", "timeout", "inactive", "cancelled"]


async def run_command(
    ctx: RunnerContext,
    command: list[str],
    *,
    cwd: Path | None = None,
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
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    last_output = loop.time()

    def on_output(data: bytes) -> None:
        nonlocal last_output
        last_output = loop.time()
        if text := decoder.decode(data):
            ctx.output(text)

    try:
        child = spawn(command, cwd or ctx.cwd, ctx.env if env is None else env, on_output)
    except OSError as exc:
        return Outcome(error=f"cannot start {command[0]}: {exc}")
    ctx.ledger.add(child.pid, scope_of(ctx.stage_id))
    verdict = await supervise(child, ctx.timeout, ctx.cancelled, inactivity, lambda: last_output)
    if end_group:  # the group, and what left it carrying the stage's scope
        scope = scope_of(ctx.stage_id)
        await end_scope(scope, ctx.ledger.take(scope))
    # Background processes the command left running may hold the pipe; it
    # stays open and read (so they never die of SIGPIPE) but is not waited for.
    if await drain(child) and (tail := decoder.decode(b"", final=True)):
        ctx.output(tail)
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


async def drain(child: Child, grace: float = DRAIN_AFTER_EXIT) -> bool:
    """Give the output pipe `grace` seconds to close after the exit; whether it did."""
    if not child.output_closed.done():
        await asyncio.wait({child.output_closed}, timeout=grace)
    return child.output_closed.done()


def shell_exit_code(returncode: int | None) -> int | None:
    """As a shell reports it: a death by signal N is 128 + N."""
    if returncode is None or returncode >= 0:
        return returncode
    return 128 - returncode
