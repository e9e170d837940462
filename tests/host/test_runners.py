"""`execute`, the one way a host runs a task: whatever goes wrong with the
task's runner (none for its type, one that is not a runner, one that
crashes) is that stage's error, never the agent's end; a good runner's
outcome comes back as it said it."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from phalanx.host.context import RunnerContext
from phalanx.host.process import GroupLedger
from phalanx.host.runners import RUNNERS, execute
from phalanx.tasks import Outcome, Task
from phalanx.tasks.shell import ShellTask


@dataclass(frozen=True)
class Teleport(Task):
    type: ClassVar[str] = "teleport"
    version: ClassVar[int] = 1


def context(tmp_path: Path, out: list[bytes]) -> RunnerContext:
    return RunnerContext(
        stage_id="s1",
        scope="r:1:case",
        env=dict(os.environ),
        cwd=tmp_path,
        scratch_root=tmp_path / "scratch",
        timeout=30,
        output=out.append,
        ledger=GroupLedger(tmp_path / "groups"),
    )


@pytest.fixture
def teleport_runner() -> Iterator[None]:
    yield
    RUNNERS.unregister("teleport")


async def test_a_task_type_this_host_has_no_runner_for_is_the_stages_error(
    tmp_path: Path,
) -> None:
    outcome = await execute(Teleport(), context(tmp_path, []))
    assert outcome == Outcome(error="this host has no runner for task type 'teleport'")


async def test_a_runner_that_crashes_is_the_stages_error_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, teleport_runner: None
) -> None:
    async def broken(task: Teleport, ctx: RunnerContext) -> Outcome:
        raise ValueError("no such destination")

    RUNNERS.register("teleport", broken)
    with caplog.at_level(logging.ERROR, logger="phalanx.agent"):
        outcome = await execute(Teleport(), context(tmp_path, []))
    assert outcome.error == "the teleport runner crashed: ValueError('no such destination')"
    assert outcome.exit_code is None
    assert "the teleport runner crashed" in caplog.text and "no such destination" in caplog.text


async def test_a_registered_thing_that_is_not_a_runner_is_the_stages_error(
    tmp_path: Path, teleport_runner: None
) -> None:
    RUNNERS.register("teleport", "not callable")  # type: ignore[arg-type]
    outcome = await execute(Teleport(), context(tmp_path, []))
    assert outcome.error is not None
    assert "'teleport'" in outcome.error and "is not a task runner" in outcome.error


async def test_a_runner_registered_in_this_process_runs_with_the_stages_context(
    tmp_path: Path, teleport_runner: None
) -> None:
    async def arrive(task: Teleport, ctx: RunnerContext) -> Outcome:
        ctx.output(f"{ctx.stage_id} arrived in {ctx.scratch().name}\n".encode())
        await asyncio.sleep(0)
        return Outcome(exit_code=0, data={"where": "there"})

    RUNNERS.register("teleport", arrive)
    out: list[bytes] = []
    outcome = await execute(Teleport(), context(tmp_path, out))
    assert outcome == Outcome(exit_code=0, data={"where": "there"})
    assert out == [b"s1 arrived in s1\n"]
    assert (tmp_path / "scratch" / "s1").is_dir()


async def test_phalanx_own_shell_runner_runs_a_real_script(tmp_path: Path) -> None:
    out: list[bytes] = []
    outcome = await execute(ShellTask(script="echo from $PWD; exit 3"), context(tmp_path, out))
    assert outcome.exit_code == 3 and outcome.error is None
    assert b"".join(out) == f"from {tmp_path}\n".encode()
