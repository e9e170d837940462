"""The host's task runners, one per task type, and the one way to run a
task: `execute`, which the agent daemon and the in-process session both
call. A new task type adds its runner here; the callers stay."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from phalanx.host import executable, pyrunner, shell, vmrunner
from phalanx.host.context import RunnerContext
from phalanx.tasks import ExecutableTask, Outcome, PythonTask, ShellTask, Task, VmTask, WalksTask

log = logging.getLogger("phalanx.agent")

T = TypeVar("T", bound=Task)
Runner = Callable[[Any, RunnerContext], Awaitable[Outcome]]


def runner(
    cls: type[T], run: Callable[[T, RunnerContext], Awaitable[Outcome]]
) -> tuple[str, Runner]:
    """`run` as the runner of `cls`'s tasks (checked: it takes that type)."""
    return cls.type, run


RUNNERS: dict[str, Runner] = dict(
    [
        runner(ShellTask, shell.run_shell),
        runner(PythonTask, pyrunner.run_python),
        runner(WalksTask, pyrunner.run_walks),
        runner(ExecutableTask, executable.run_executable),
        runner(VmTask, vmrunner.run_vm),
    ]
)


async def execute(task: Task, ctx: RunnerContext) -> Outcome:
    """Run `task`; never raises for a task's problem: a task this host has
    no runner for, or a runner that crashed, is the outcome's error."""
    run = RUNNERS.get(task.type)
    if run is None:
        return Outcome(error=f"this host has no runner for task type {task.type!r}")
    try:
        return await run(task, ctx)
    except Exception as exc:  # a runner bug is this task's error, not the host's end
        log.exception("the %s runner crashed", task.type)
        return Outcome(error=f"the {task.type} runner crashed: {exc!r}")
