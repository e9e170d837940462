"""The `executable` runner: one tree test (`run-test`, or a declarative test
run by `python -m phalanx.host.declarative`) in its own process group and
its own sandbox folder.

Dependencies are checked here, on the host that runs the test. A test is
stopped, with its whole process group, when it exceeds its timeout or stays
silent for longer than its inactivity limit. When it exits, whatever it left
running in its group is ended too: parallel tests must not inherit each
other's daemons.
"""

from __future__ import annotations

import asyncio
import os

from phalanx.host import beside, depends
from phalanx.host.command import run_command
from phalanx.host.context import RunnerContext
from phalanx.host.sandbox import Sandboxes
from phalanx.tasks import ExecutableTask, Outcome

RUN_TEST = "run-test"
# A tree whose suite brings Asterisk's own runner: its declarative tests are
# run by it, as runtests.py runs them (from the suite's folder, by path).
ASTERISK_RUNNER = os.path.join("lib", "python", "asterisk", "test_runner.py")


def command(task: ExecutableTask) -> list[str]:
    if task.declarative:
        root = task.cwd
        if root is not None and os.path.isfile(os.path.join(root, ASTERISK_RUNNER)):
            python = dict(task.checks).get("python") or beside.python()
            return [python, "-m", "asterisk.test_runner", os.path.relpath(task.dir, root)]
        return [beside.python(), "-m", "phalanx.host.declarative", task.dir]
    return [os.path.join(task.dir, RUN_TEST)]


async def run_executable(task: ExecutableTask, ctx: RunnerContext) -> Outcome:
    if task.skip:
        return Outcome(data={"skipped": f"skip: {task.skip}"})
    if task.dependencies:
        checker = depends.Checker.shared(dict(task.checks)) if task.checks else None
        check = checker.unmet if checker is not None else depends.unmet
        missing = await asyncio.to_thread(check, task.dependencies)
        if missing:
            return Outcome(data={"skipped": "unmet dependency: " + ", ".join(missing)})
    sandboxes = ctx.sandboxes or Sandboxes(ctx.scratch_root)
    sandbox = sandboxes.take(task.name or ctx.stage_id)
    env = {
        **ctx.env,
        **dict(task.env),
        "PHALANX_SANDBOX": sandbox,
        "PHALANX_TEST_DIR": task.dir,
        "PHALANX_TEST_NAME": task.name,
        "TMPDIR": sandbox,  # so mktemp and tempfile land in the sandbox too
    }
    try:
        return await run_command(
            ctx,
            command(task),
            cwd=task.cwd or task.dir,
            env=env,
            inactivity=task.inactivity,
            end_group=True,
        )
    finally:
        sandboxes.give_back(sandbox)
        if ctx.sandboxes is None:
            sandboxes.close()
