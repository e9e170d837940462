"""The `executable` runner: one tree test (`run-test`, or a declarative test
run by `python -m phalanx.kinds.declarative`) in its own process group and
its own sandbox folder.

Dependencies are checked here, on the host that runs the test. A test is
stopped, with its whole process group, when it exceeds its timeout or stays
silent for longer than its inactivity limit. When it exits, whatever it left
running in its group is ended too: parallel tests must not inherit each
other's daemons.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from phalanx.agent.process import Child, group_alive, kill_group, spawn
from phalanx.agent.runners import RunnerContext, RunnerResult
from phalanx.kinds import depends

DRAIN_AFTER_EXIT = 0.2  # seconds to wait for output still in the pipe after the exit
RUN_TEST = "run-test"


def sandbox_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+#-]", "_", name) or "_"


def command(payload: dict[str, Any]) -> list[str]:
    folder = str(payload["dir"])
    if payload.get("declarative"):
        return [sys.executable, "-m", "phalanx.kinds.declarative", folder]
    return [os.path.join(folder, RUN_TEST)]


async def run_executable(ctx: RunnerContext) -> RunnerResult:
    payload = ctx.payload
    skip = payload.get("skip")
    if skip:
        return RunnerResult(data={"skipped": f"skip: {skip}"})
    needs = payload.get("dependencies") or []
    if needs:
        missing = await asyncio.to_thread(depends.unmet, needs)
        if missing:
            return RunnerResult(data={"skipped": "unmet dependency: " + ", ".join(missing)})
    sandbox = ctx.scratch_root / sandbox_name(str(payload.get("name") or ctx.stage_id))
    sandbox.mkdir(parents=True, exist_ok=True)
    env = {
        **ctx.env,
        "PHALANX_SANDBOX": str(sandbox),
        "PHALANX_TEST_DIR": str(payload["dir"]),
        "PHALANX_TEST_NAME": str(payload.get("name", "")),
        "TMPDIR": str(sandbox),  # so mktemp and tempfile land in the sandbox too
    }
    cwd = Path(str(payload.get("cwd") or payload["dir"]))
    inactivity = payload.get("inactivity")
    try:
        return await _run(ctx, command(payload), cwd, env, inactivity)
    finally:
        # Off the event loop and not awaited: an rmdir costs as much as a
        # trivial test here, and nothing waits on it. asyncio.run waits for
        # the default executor before it returns.
        asyncio.get_running_loop().run_in_executor(None, _drop_if_empty, sandbox)


async def _run(
    ctx: RunnerContext,
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    inactivity: float | None,
) -> RunnerResult:
    loop = asyncio.get_running_loop()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    last_output = loop.time()

    def on_output(data: bytes) -> None:
        nonlocal last_output
        last_output = loop.time()
        if text := decoder.decode(data):
            ctx.output(text)

    try:
        child = await spawn(argv, cwd, env, on_output)
    except OSError as exc:
        return RunnerResult(error=f"cannot start {argv[0]}: {exc}")
    ctx.ledger.add(child.pid)
    verdict = await _wait(child, ctx, inactivity, lambda: last_output)
    if group_alive(child.pid):
        # The test exited (or was killed) but left processes in its group.
        await kill_group(child.pid)
    try:
        await asyncio.wait_for(asyncio.shield(child.output_closed), DRAIN_AFTER_EXIT)
    except TimeoutError:
        pass  # someone outside the group holds the pipe; what arrived is kept
    else:
        if tail := decoder.decode(b"", final=True):
            ctx.output(tail)
    code = child.returncode
    exit_code = 128 - code if code is not None and code < 0 else code
    if verdict == "inactive":
        return RunnerResult(
            exit_code=exit_code,
            timed_out=True,
            data={"timeout": f"no output for {inactivity:g}s; its process group was killed"},
        )
    return RunnerResult(
        exit_code=exit_code, timed_out=verdict == "timeout", cancelled=verdict == "cancelled"
    )


async def _wait(
    child: Child,
    ctx: RunnerContext,
    inactivity: float | None,
    last_output: Any,
) -> str:
    """Wait for the exit; on a timeout, silence or cancel, kill the group.
    Returns "exited", "timeout", "inactive" or "cancelled"."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.timeout
    cancel: asyncio.Future[Any] = asyncio.ensure_future(ctx.cancelled.wait())
    verdict = "exited"
    try:
        while not child.exited.done():
            now = loop.time()
            wake = deadline
            if inactivity is not None:
                wake = min(wake, last_output() + inactivity)
            if now >= deadline:
                verdict = "timeout"
                break
            if inactivity is not None and now >= last_output() + inactivity:
                verdict = "inactive"
                break
            await asyncio.wait(
                {child.exited, cancel}, timeout=wake - now, return_when=asyncio.FIRST_COMPLETED
            )
            if cancel.done() and not child.exited.done():
                verdict = "cancelled"
                break
    finally:
        cancel.cancel()
    if verdict != "exited":
        await kill_group(child.pid)
        await child.exited
    return verdict


def _drop_if_empty(sandbox: Path) -> None:
    """A test that wrote nothing leaves no folder behind (most do not)."""
    with contextlib.suppress(OSError):  # not empty: the test left files to look at
        sandbox.rmdir()
