"""The in-process host session (test trees on this machine): the agent's
runners without the wire. A stage runs for real with its scope's mark, its
output comes as written, a cancel reaches it, and its times bracket it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from phalanx.engine.session import StageOrder
from phalanx.host.inprocess import InProcessSession
from phalanx.host.process import SCOPE_MARK, GroupLedger
from phalanx.host.sandbox import Sandboxes
from phalanx.tasks import ShellTask
from tests.eventually import eventually_async

TIMEOUT = 30.0


def session(tmp_path: Path) -> InProcessSession:
    workdir = tmp_path / "work"
    workdir.mkdir()
    return InProcessSession(
        "localhost", workdir, Sandboxes(tmp_path / "sandboxes"), GroupLedger(tmp_path / "groups")
    )


def order(stage_id: str, script: str, scope: str = "r1:1:case") -> StageOrder:
    return StageOrder(
        stage_id=stage_id,
        host="localhost",
        task=ShellTask(script=script),
        env=dict(os.environ),
        timeout=TIMEOUT,
        scope=scope,
    )


async def test_a_stage_runs_in_the_workdir_with_its_scopes_mark(tmp_path: Path) -> None:
    host = session(tmp_path)
    out: list[bytes] = []
    report = await host.run_stage(
        order("s1", f'echo "$PWD ${SCOPE_MARK}"; exit 5', scope="r1:2:case-b"), out.append
    )
    assert report.outcome.exit_code == 5
    assert b"".join(out) == f"{tmp_path / 'work'} r1:2:case-b\n".encode()
    assert report.started_at <= report.ended_at
    assert host.running == {}  # nothing is left noted once the stage is over


async def test_a_cancel_ends_the_running_stage_and_an_unknown_one_is_ignored(
    tmp_path: Path,
) -> None:
    host = session(tmp_path)
    started = tmp_path / "started"
    stage = asyncio.create_task(
        host.run_stage(order("s1", f"touch {started}; sleep 300"), lambda _: None)
    )
    await eventually_async(started.exists, within=TIMEOUT, what="the stage started")
    host.cancel("not-running")  # nothing happens
    assert "s1" in host.running
    host.cancel("s1")
    report = await asyncio.wait_for(stage, TIMEOUT)
    assert report.outcome.cancelled
    assert host.running == {}
    assert await host.collect_logs("s1") == []  # in-process: no logs to collect


async def test_stages_side_by_side_each_get_their_own_output(tmp_path: Path) -> None:
    host = session(tmp_path)
    outs: dict[str, list[bytes]] = {"a": [], "b": []}
    reports = await asyncio.gather(
        *(
            host.run_stage(order(name, f"echo {name}1; sleep 0.1; echo {name}2"), outs[name].append)
            for name in ("a", "b")
        )
    )
    assert [r.outcome.exit_code for r in reports] == [0, 0]
    assert {k: b"".join(v) for k, v in outs.items()} == {"a": b"a1\na2\n", "b": b"b1\nb2\n"}
