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
from pathlib import Path

from phalanx.agent.process import kill_group
from phalanx.agent.runners import RunnerContext, RunnerResult

DRAIN_AFTER_EXIT = 0.2  # seconds to wait for output still in the pipe after the script exits
_SHELLS = {"bash", "sh", "dash", "zsh", "ksh"}
_lingering: set[asyncio.Task[None]] = set()


def command_for(script: Path, text: str) -> list[str]:
    first = text.split("\n", 1)[0]
    if not first.startswith("#!"):
        return ["bash", "-e", str(script)]
    words = shlex.split(first[2:].strip())
    if not words:
        return ["bash", "-e", str(script)]
    interpreter, args = words[0], words[1:]
    name = os.path.basename(interpreter)
    if name == "env" and args:
        name = os.path.basename(args[0])
        interpreter, args = args[0], args[1:]
    if name in _SHELLS:
        return [interpreter, "-e", *args, str(script)]
    script.chmod(0o755)
    return [str(script)]


async def run_shell(ctx: RunnerContext) -> RunnerResult:
    text = str(ctx.payload.get("script", ""))
    script = ctx.stage_dir / "script"
    script.write_text(text)
    try:
        proc = await asyncio.create_subprocess_exec(
            *command_for(script, text),
            cwd=ctx.cwd,
            env=ctx.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return RunnerResult(error=f"cannot start the stage script: {exc}")
    ctx.ledger.add(proc.pid)
    assert proc.stdout is not None
    reader = asyncio.create_task(_pump(proc.stdout, ctx))
    waiter = asyncio.create_task(proc.wait())
    cancel = asyncio.create_task(ctx.cancelled.wait())
    try:
        await asyncio.wait({waiter, cancel}, timeout=ctx.timeout, return_when="FIRST_COMPLETED")
    finally:
        cancel.cancel()
    timed_out = cancelled = False
    if not waiter.done():
        cancelled = ctx.cancelled.is_set()
        timed_out = not cancelled
        await kill_group(proc.pid)
        await waiter
    # Background processes the script left running keep the pipe open; keep
    # draining it (so they never die of SIGPIPE) but do not wait for them.
    try:
        await asyncio.wait_for(asyncio.shield(reader), DRAIN_AFTER_EXIT)
    except TimeoutError:
        _lingering.add(reader)
        reader.add_done_callback(_lingering.discard)
    return RunnerResult(
        exit_code=_exit_code(proc.returncode), timed_out=timed_out, cancelled=cancelled
    )


async def _pump(stream: asyncio.StreamReader, ctx: RunnerContext) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := await stream.read(65536):
        text = decoder.decode(chunk)
        if text:
            ctx.output(text)
    if tail := decoder.decode(b"", final=True):
        ctx.output(tail)


def _exit_code(returncode: int | None) -> int | None:
    """As a shell reports it: a death by signal N is 128 + N."""
    if returncode is None or returncode >= 0:
        return returncode
    return 128 + -returncode


def stop_lingering() -> None:
    for task in list(_lingering):
        task.cancel()
