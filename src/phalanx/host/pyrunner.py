"""The `python` and `walks` runners: the task runs in a child Python process
of its own (its own process group), so a test that hangs or crashes ends
with its stage, not with the agent."""

from __future__ import annotations

import dataclasses
import json
import sys

from phalanx.host.command import run_command
from phalanx.host.context import RunnerContext
from phalanx.tasks import Outcome, PythonTask, Task, WalksTask, to_json


async def run_child(task: Task, ctx: RunnerContext, module: str) -> Outcome:
    """Run `python -m MODULE TASK.json RESULT.json`; TASK.json is `task`,
    which the child reads back into its class; RESULT.json is the data."""
    scratch = ctx.scratch()
    task_path, result_path = scratch / "task.json", scratch / "result.json"
    task_path.write_text(json.dumps(to_json(task)))
    result_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", module, str(task_path), str(result_path)]
    result = await run_command(ctx, command)
    try:
        data = json.loads(result_path.read_text())
    except (OSError, ValueError):
        data = None  # killed (timeout) or crashed before it could report
    if data is None and result.exit_code not in (0, None) and not result.timed_out:
        data = {"error": f"the test process exited with code {result.exit_code} before reporting"}
    return dataclasses.replace(result, data=data)


async def run_python(task: PythonTask, ctx: RunnerContext) -> Outcome:
    return await run_child(task, ctx, "phalanx.host.pychild")


async def run_walks(task: WalksTask, ctx: RunnerContext) -> Outcome:
    return await run_child(task, ctx, "phalanx.host.walkchild")
