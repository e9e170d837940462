"""The `shell` runner: a stage script run in its own process group.

Scripts without a shebang, or with a bash/sh one, run under `-e` (XrdTest's
contract: a failing command fails the stage unless wrapped in `assert_fail`).
Other shebangs are executed as they are. stderr goes to stdout.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import shlex
from typing import Any

from phalanx.agent.process import Child, kill_group, spawn
from phalanx.agent.runners import RunnerContext, RunnerResult

DRAIN_AFTER_EXIT = 0.2  # seconds to wait for output still in the pipe after the script exits
INLINE_LIMIT = 64 * 1024  # longer scripts go to a file (one argument may hold 128 KiB)
_SHELLS = {"bash", "sh", "dash", "zsh", "ksh"}


def interpreter(text: str) -> list[str] | None:
    """The shell (with its shebang arguments and -e) that runs `text`, or
    None when its shebang names something else, to be executed as it is."""
    first = text.split("\n", 1)[0]
    words = shlex.split(first[2:].strip()) if first.startswith("#!") else []
    if not words:
        return ["bash", "-e"]
    program, args = words[0], words[1:]
    name = os.path.basename(program)
    if name == "env" and args:
        program, args = args[0], args[1:]
        name = os.path.basename(program)
    return [program, "-e", *args] if name in _SHELLS else None


def command_for(ctx: RunnerContext, text: str, name: str) -> list[str]:
    shell = interpreter(text)
    if shell is not None and len(text) <= INLINE_LIMIT:
        # No file to write: one syscall-heavy step less on every barrier.
        return [*shell, "-c", text, name]
    script = ctx.scratch() / "script"
    script.write_text(text)
    if shell is not None:
        return [*shell, str(script)]
    script.chmod(0o755)
    return [str(script)]


async def run_shell(ctx: RunnerContext) -> RunnerResult:
    text = str(ctx.payload.get("script", ""))
    name = str(ctx.payload.get("origin") or "stage")
    return await run_command(ctx, command_for(ctx, text, name))


async def run_command(ctx: RunnerContext, command: list[str]) -> RunnerResult:
    """Run `command` for a stage: output streamed, timeout and cancel honoured
    by killing the whole process group."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def on_output(data: bytes) -> None:
        if text := decoder.decode(data):
            ctx.output(text)

    try:
        child = await spawn(command, ctx.cwd, ctx.env, on_output)
    except OSError as exc:
        return RunnerResult(error=f"cannot start {command[0]}: {exc}")
    ctx.ledger.add(child.pid)
    timed_out, cancelled = await _wait(child, ctx)
    # Background processes the script left running may keep the pipe open;
    # it stays open and read (so they never die of SIGPIPE), but is not waited for.
    try:
        await asyncio.wait_for(asyncio.shield(child.output_closed), DRAIN_AFTER_EXIT)
    except TimeoutError:
        pass
    else:
        if tail := decoder.decode(b"", final=True):
            ctx.output(tail)
    return RunnerResult(
        exit_code=_exit_code(child.returncode), timed_out=timed_out, cancelled=cancelled
    )


async def _wait(child: Child, ctx: RunnerContext) -> tuple[bool, bool]:
    """Wait for the exit, the timeout or a cancel; (timed out, cancelled)."""
    cancel: asyncio.Future[Any] = asyncio.ensure_future(ctx.cancelled.wait())
    waiters: set[asyncio.Future[Any]] = {child.exited, cancel}
    try:
        await asyncio.wait(waiters, timeout=ctx.timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancel.cancel()
    if child.exited.done():
        return False, False
    cancelled = ctx.cancelled.is_set()
    await kill_group(child.pid)
    await child.exited
    return not cancelled, cancelled


def _exit_code(returncode: int | None) -> int | None:
    """As a shell reports it: a death by signal N is 128 + N."""
    if returncode is None or returncode >= 0:
        return returncode
    return 128 + -returncode
