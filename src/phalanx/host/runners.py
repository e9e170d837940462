"""The host's task runners, by the task type a case kind names, and the one
way to run a task: `execute`, which the agent daemon and the in-process
session both call. New kinds add a runner here; the callers stay."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from phalanx.host import executable, pyrunner, shell
from phalanx.host.context import RunnerContext
from phalanx.tasks import Outcome, Task

log = logging.getLogger("phalanx.agent")

Runner = Callable[[RunnerContext], Awaitable[Outcome]]

RUNNERS: dict[str, Runner] = {
    "shell": shell.run_shell,
    "python": pyrunner.run_python,
    "walks": pyrunner.run_walks,
    "executable": executable.run_executable,
}


async def execute(task: Task, ctx: RunnerContext) -> Outcome:
    """Run `task`; never raises for a task's problem: a task this host has
    no runner for, or a runner that crashed, is the outcome's error."""
    runner = RUNNERS.get(task.type)
    if runner is None:
        return Outcome(error=f"this host has no runner for {task.type!r}")
    try:
        return await runner(ctx)
    except Exception as exc:  # a runner bug is this task's error, not the host's end
        log.exception("the %s runner crashed", task.type)
        return Outcome(error=f"the {task.type} runner crashed: {exc!r}")
