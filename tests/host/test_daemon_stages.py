"""The agent daemon running stages, in-process, against a small real
WebSocket server that plays the coordinator: what crosses the wire for
output, barriers, key/values, logs, cancels, timeouts, case scopes and
shutdown, and what is left on the host afterwards."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection

from phalanx.host.daemon import Agent
from phalanx.tasks.shell import ShellTask
from phalanx.wire.messages import (
    Ack,
    AgentMessage,
    KvSend,
    KvValue,
    KvWait,
    LogsCollect,
    LogsResult,
    ScopeEnd,
    Shutdown,
    StageCancel,
    StageOutput,
    StageResult,
    StageStart,
    SyncArrive,
    SyncRelease,
    TaskSpec,
    encode,
)
from tests.eventually import eventually_async, never_async
from tests.host.test_daemon import PlayedCoordinator, played, receive
from tests.processes import alive

__all__ = ["played"]  # the fixture, used by name

SCOPE = "r1:1:case"


async def ended(pid: int) -> bool:
    """`pid` ends within 10 s; the agent (in this event loop) runs meanwhile."""
    await eventually_async(lambda: not alive(pid), within=10, what=f"process {pid} ending")
    return True


def start(
    stage_id: str,
    script: str,
    *,
    scope: str = SCOPE,
    timeout: float = 30,
    logs: list[str] | None = None,
    end_scopes: list[str] | None = None,
) -> str:
    return encode(
        StageStart(
            stage_id=stage_id,
            scope=scope,
            task=TaskSpec(type="shell", version=ShellTask.version, payload={"script": script}),
            timeout=timeout,
            logs=logs or [],
            end_scopes=end_scopes or [],
        )
    )


class Link:
    """One agent connection, read in order: what the agent said, by kind."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.output: dict[str, bytes] = {}
        self.seqs: dict[str, list[int]] = {}

    async def send(self, message: object) -> None:
        await self.ws.send(message if isinstance(message, str) else encode(message))  # type: ignore[arg-type]

    async def next(self, kind: type[AgentMessage]) -> AgentMessage:
        """The next message of `kind`; output on the way is kept."""
        while True:
            message = await receive(self.ws)
            if isinstance(message, StageOutput):
                self.output[message.stage_id] = (
                    self.output.get(message.stage_id, b"") + message.content
                )
                self.seqs.setdefault(message.stage_id, []).append(message.seq)
            if isinstance(message, kind):
                return message

    async def result(self, stage_id: str) -> StageResult:
        message = await self.next(StageResult)
        assert isinstance(message, StageResult) and message.stage_id == stage_id, message
        await self.send(Ack(ref=stage_id))
        return message


@pytest.fixture
async def link(
    played: tuple[PlayedCoordinator, str], tmp_path: Path
) -> AsyncIterator[tuple[Link, Agent]]:
    coordinator, url = played
    agent = Agent(url, "h1", "token", tmp_path / "h1", backoff_max=0.2)
    running = asyncio.create_task(agent.run())
    try:
        yield Link(await coordinator.next()), agent
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_output_crosses_as_the_bytes_written_in_order(link: tuple[Link, Agent]) -> None:
    wire, _ = link
    await wire.send(start("s1", r"printf 'caf\303\251 \377\376 raw\n'; seq 1 2000; printf end"))
    result = await wire.result("s1")
    assert result.outcome.exit_code == 0
    data = wire.output["s1"]
    assert data.startswith(b"caf\xc3\xa9 \xff\xfe raw\n1\n2\n")
    assert data.endswith(b"2000\nend")
    seqs = wire.seqs["s1"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_a_barrier_holds_the_stage_until_the_coordinator_releases_it(
    link: tuple[Link, Agent], tmp_path: Path
) -> None:
    wire, _ = link
    after = tmp_path / "after"
    await wire.send(start("s1", f"echo before\nphalanx-sync ready\ntouch {after}\necho after"))
    arrive = await wire.next(SyncArrive)
    assert isinstance(arrive, SyncArrive)
    assert (arrive.stage_id, arrive.name) == ("s1", "ready")
    await never_async(after.exists, window=0.3, what="the stage went past its barrier")
    await wire.send(SyncRelease(request_id=arrive.request_id))
    result = await wire.result("s1")
    assert result.outcome.exit_code == 0 and after.exists()
    assert wire.output["s1"] == b"before\nafter\n"


async def test_a_value_sent_by_one_stage_is_what_another_waits_for(
    link: tuple[Link, Agent],
) -> None:
    wire, _ = link
    await wire.send(start("s1", "phalanx-send port 4242\necho sent"))
    sent = await wire.next(KvSend)
    assert isinstance(sent, KvSend) and (sent.key, sent.value) == ("port", "4242")
    await wire.result("s1")
    await wire.send(start("s2", 'echo "got $(phalanx-wait port)"'))
    wait = await wire.next(KvWait)
    assert isinstance(wait, KvWait) and (wait.stage_id, wait.key) == ("s2", "port")
    await wire.send(KvValue(request_id=wait.request_id, key="port", value="4242"))
    await wire.result("s2")
    assert wire.output["s2"] == b"got 4242\n"


async def test_logs_are_what_the_file_gained_during_the_stage(
    link: tuple[Link, Agent], tmp_path: Path
) -> None:
    wire, _ = link
    workdir = tmp_path / "h1"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "app.log").write_text("from before\n")
    await wire.send(start("s1", "echo during >> app.log", logs=["app.log", "absent.log"]))
    await wire.result("s1")
    await wire.send(LogsCollect(request_id="q1", stage_id="s1"))
    answer = await wire.next(LogsResult)
    assert isinstance(answer, LogsResult) and answer.request_id == "q1"
    files = {f.path: f for f in answer.files}
    assert base64.b64decode(files["app.log"].content_b64) == b"during\n"
    assert files["absent.log"].missing


async def test_a_cancel_ends_the_stage_and_everything_it_started(
    link: tuple[Link, Agent], tmp_path: Path
) -> None:
    wire, _ = link
    pid_file = tmp_path / "bg.pid"
    await wire.send(start("s1", f"sleep 300 &\necho $! > {pid_file}\necho go\nsleep 300"))
    await eventually_async(pid_file.exists, within=10, what="the stage's background child")
    await wire.send(StageCancel(stage_id="s1"))
    result = await wire.result("s1")
    assert result.outcome.cancelled
    assert await ended(int(pid_file.read_text()))


async def test_a_timeout_kills_the_group_and_says_so(link: tuple[Link, Agent]) -> None:
    wire, _ = link
    await wire.send(start("s1", "trap '' TERM\nsleep 30", timeout=0.5))
    result = await wire.result("s1")
    assert result.outcome.timed_out
    assert result.outcome.signal == 9  # it ignored SIGTERM: SIGKILL after the grace


async def test_what_a_case_left_running_ends_with_its_scope_and_not_before(
    link: tuple[Link, Agent], tmp_path: Path
) -> None:
    wire, _ = link
    mine, other = tmp_path / "mine.pid", tmp_path / "other.pid"
    # A server the case's initialize starts lives through the case's stages...
    await wire.send(start("s1", f"sleep 300 >/dev/null 2>&1 &\necho $! > {mine}"))
    await wire.result("s1")
    await wire.send(
        start("s2", f"sleep 300 >/dev/null 2>&1 &\necho $! > {other}", scope="r1:2:next")
    )
    await wire.result("s2")
    await wire.send(start("s3", "true"))
    await wire.result("s3")
    mine_pid, other_pid = int(mine.read_text()), int(other.read_text())
    assert alive(mine_pid)
    # ...and ends with the case (`scope.end`), the other case's with its own
    # (carried by the next stage.start).
    await wire.send(ScopeEnd(scope=SCOPE))
    assert await ended(mine_pid)
    assert alive(other_pid)
    await wire.send(start("s4", "true", scope="r1:3:last", end_scopes=["r1:2:next"]))
    await wire.result("s4")
    assert await ended(other_pid)


async def test_a_stage_sees_its_id_and_scope_but_not_the_agents_token(
    link: tuple[Link, Agent], tmp_path: Path
) -> None:
    wire, _ = link
    await wire.send(start("s1", "env"))
    await wire.result("s1")
    env = dict(
        line.split("=", 1) for line in wire.output["s1"].decode().splitlines() if "=" in line
    )
    assert env["PHALANX_STAGE_ID"] == "s1"
    assert SCOPE in env.values()  # the scope mark that ends leftovers with their case
    assert "token" not in env.values()


async def test_a_task_this_agent_cannot_run_is_the_stages_error(link: tuple[Link, Agent]) -> None:
    wire, _ = link
    task = TaskSpec(type="shell", version=ShellTask.version + 99, payload={"script": "true"})
    await wire.send(StageStart(stage_id="s1", scope=SCOPE, task=task, timeout=5))
    result = await wire.result("s1")
    assert result.outcome.error is not None and "shell" in result.outcome.error


async def test_shutdown_ends_running_stages_and_the_agent(
    played: tuple[PlayedCoordinator, str], tmp_path: Path
) -> None:
    coordinator, url = played
    agent = Agent(url, "h1", "token", tmp_path / "h1", backoff_max=0.2)
    running = asyncio.create_task(agent.run())
    try:
        wire = Link(await coordinator.next())
        pid_file = tmp_path / "stage.pid"
        await wire.send(start("s1", f"echo $$ > {pid_file}\nsleep 300"))
        await eventually_async(pid_file.exists, within=10, what="the stage")
        await wire.send(Shutdown())
        assert await asyncio.wait_for(running, 30) == 0
        assert await ended(int(pid_file.read_text()))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
