"""The `python` and `walks` runners: the task runs in a child Python process
of its own (its own process group), so a test that hangs or crashes ends
with its stage, not with the agent."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path

from phalanx.host import beside
from phalanx.host.command import run_command
from phalanx.host.context import RunnerContext
from phalanx.tasks import Outcome, PythonTask, Task, WalksTask, to_json

# The child imports phalanx, which needs this Python or later.
LEAST_PYTHON = (3, 11)
CHECK_TIMEOUT = 30.0  # seconds for another interpreter to say its version


async def run_child(task: Task, ctx: RunnerContext, module: str, python: str = "") -> Outcome:
    """Run `python -m MODULE TASK.json RESULT.json`; TASK.json is `task`,
    which the child reads back into its class; RESULT.json is the data.
    `python`: another interpreter than the agent's (phalanx's source folder
    goes on its PYTHONPATH)."""
    env = None
    if python:
        if problem := await unusable(python):
            return Outcome(error=f"python: {problem}")
        env = dict(ctx.env)
        source = beside.phalanx_path()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    scratch = ctx.scratch()
    task_path, result_path = scratch / "task.json", scratch / "result.json"
    task_path.write_text(json.dumps(to_json(task)))
    result_path.unlink(missing_ok=True)
    command = [python or beside.python(), "-m", module, str(task_path), str(result_path)]
    result = await run_command(ctx, command, env=env)
    try:
        data = json.loads(result_path.read_text())
    except (OSError, ValueError):
        data = None  # killed (timeout) or crashed before it could report
    if data is None and result.exit_code not in (0, None) and not result.timed_out:
        data = {"error": f"the test process exited with code {result.exit_code} before reporting"}
    return dataclasses.replace(result, data=data)


async def run_python(task: PythonTask, ctx: RunnerContext) -> Outcome:
    return await run_child(task, ctx, "phalanx.host.pychild", task.python)


async def unusable(python: str) -> str | None:
    """Why `python` cannot run phalanx's test child, or None if it can."""
    seen = beside.path(python)  # a container host's, when the agent is beside one
    if not os.path.isfile(seen) or not os.access(seen, os.X_OK):
        return f"{python}: no such executable on this host"
    probe = "import sys; print('%d %d' % sys.version_info[:2])"
    try:
        proc = await asyncio.create_subprocess_exec(
            *beside.command([python, "-c", probe], Path.cwd()),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        return f"{python}: cannot be started ({exc.strerror})"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"{python}: did not say its version within {CHECK_TIMEOUT:g} s"
    try:
        version = tuple(int(n) for n in out.split()[:2])
    except ValueError:
        version = ()
    if proc.returncode != 0 or len(version) != 2:
        return f"{python}: not a Python interpreter ({out.decode(errors='replace').strip()[:200]})"
    if version < LEAST_PYTHON:
        return (
            f"{python} is Python {version[0]}.{version[1]}; phalanx's test child needs "
            f"Python >= {LEAST_PYTHON[0]}.{LEAST_PYTHON[1]} (see docs/compat.md, CloudPunch)"
        )
    return None


async def run_walks(task: WalksTask, ctx: RunnerContext) -> Outcome:
    return await run_child(task, ctx, "phalanx.host.walkchild")
