"""The host's task runners, one per task type, and the one way to run a
task: `execute`, which the agent daemon and the in-process session both
call. A runner is found by its task type's name: phalanx's own, or an
installed plug-in's (entry-point group `phalanx.runners`, each naming an
`async def run(task, ctx: RunnerContext) -> Outcome`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from phalanx.host.context import RunnerContext
from phalanx.plugins import Catalog, PluginError, Registry, UnknownPlugin
from phalanx.tasks import Outcome, Task

log = logging.getLogger("phalanx.agent")

Runner = Callable[[Any, RunnerContext], Awaitable[Outcome]]


def _accept(name: str, thing: object) -> Runner:
    if not callable(thing):
        raise TypeError("it is not callable (an async function of a task and its context)")
    return cast(Runner, thing)


RUNNERS: Registry[Runner] = Registry(
    Catalog(
        "phalanx.runners",
        "task runner",
        {
            "shell": "phalanx.host.shell:run_shell",
            "python": "phalanx.host.pyrunner:run_python",
            "walks": "phalanx.host.pyrunner:run_walks",
            "executable": "phalanx.host.executable:run_executable",
            "vm": "phalanx.host.vmrunner:run_vm",
        },
    ),
    _accept,
)


async def execute(task: Task, ctx: RunnerContext) -> Outcome:
    """Run `task`; never raises for a task's problem: a task this host has
    no runner for, a runner that cannot load or that crashed, is the
    outcome's error."""
    try:
        run = RUNNERS.get(task.type)
    except UnknownPlugin:
        return Outcome(error=f"this host has no runner for task type {task.type!r}")
    except PluginError as exc:
        return Outcome(error=str(exc))
    try:
        return await run(task, ctx)
    except Exception as exc:  # a runner bug is this task's error, not the host's end
        log.exception("the %s runner crashed", task.type)
        return Outcome(error=f"the {task.type} runner crashed: {exc!r}")
