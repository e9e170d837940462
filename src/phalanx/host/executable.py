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
import sys
from pathlib import Path
from typing import Any

from phalanx.host import depends
from phalanx.host.command import run_command
from phalanx.host.context import RunnerContext
from phalanx.host.sandbox import Sandboxes
from phalanx.tasks import Outcome

RUN_TEST = "run-test"


def command(payload: dict[str, Any]) -> list[str]:
    folder = str(payload["dir"])
    if payload.get("declarative"):
        return [sys.executable, "-m", "phalanx.host.declarative", folder]
    return [os.path.join(folder, RUN_TEST)]


async def run_executable(ctx: RunnerContext) -> Outcome:
    payload = ctx.payload
    skip = payload.get("skip")
    if skip:
        return Outcome(data={"skipped": f"skip: {skip}"})
    needs = payload.get("dependencies") or []
    if needs:
        missing = await asyncio.to_thread(depends.unmet, needs)
        if missing:
            return Outcome(data={"skipped": "unmet dependency: " + ", ".join(missing)})
    sandboxes = ctx.sandboxes or Sandboxes(ctx.scratch_root)
    sandbox = sandboxes.take(str(payload.get("name") or ctx.stage_id))
    env = {
        **ctx.env,
        "PHALANX_SANDBOX": sandbox,
        "PHALANX_TEST_DIR": str(payload["dir"]),
        "PHALANX_TEST_NAME": str(payload.get("name", "")),
        "TMPDIR": sandbox,  # so mktemp and tempfile land in the sandbox too
    }
    try:
        return await run_command(
            ctx,
            command(payload),
            cwd=Path(str(payload.get("cwd") or payload["dir"])),
            env=env,
            inactivity=payload.get("inactivity"),
            end_group=True,
        )
    finally:
        sandboxes.give_back(sandbox)
        if ctx.sandboxes is None:
            sandboxes.close()
