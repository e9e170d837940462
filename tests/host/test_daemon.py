"""The agent daemon's outbox and resends, in-process, against a small real
WebSocket server that plays the coordinator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from phalanx.host.daemon import WATCHES_KEPT, Agent, RecentIds
from phalanx.tasks.shell import ShellTask
from phalanx.wire.messages import (
    Ack,
    AgentMessage,
    Hello,
    HistoryOps,
    Ping,
    Pong,
    Shutdown,
    StageResult,
    StageStart,
    TaskSpec,
    encode,
    parse_agent_message,
)

TIMEOUT = 10.0


class PlayedCoordinator:
    """Hands each agent connection to the test, and keeps it open until the
    test closes it."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(self, ws: ServerConnection) -> None:
        await self.connections.put(ws)
        await ws.wait_closed()

    async def next(self) -> ServerConnection:
        ws = await asyncio.wait_for(self.connections.get(), TIMEOUT)
        hello = await receive(ws)
        assert isinstance(hello, Hello) and hello.host == "h1"
        return ws


async def receive(ws: ServerConnection) -> AgentMessage:
    return parse_agent_message(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def round_trip(ws: ServerConnection, seq: int) -> list[AgentMessage]:
    """Ping and wait for the pong: the agent has handled everything sent
    before. Returns what else it sent meanwhile."""
    await ws.send(encode(Ping(seq=seq)))
    others: list[AgentMessage] = []
    while not isinstance(message := await receive(ws), Pong) or message.seq != seq:
        others.append(message)
    return others


def start(stage_id: str, script: str, acks: list[str] | None = None) -> str:
    return encode(
        StageStart(
            stage_id=stage_id,
            scope=stage_id.rsplit(":", 1)[0],
            task=TaskSpec(type="shell", version=ShellTask.version, payload={"script": script}),
            timeout=30,
            acks=acks or [],
        )
    )


@pytest.fixture
async def played() -> AsyncIterator[tuple[PlayedCoordinator, str]]:
    coordinator = PlayedCoordinator()
    async with serve(coordinator.handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield coordinator, f"ws://127.0.0.1:{port}/agent"


async def test_an_unacked_result_is_resent_after_a_reconnect_and_dropped_once_acked(
    played: tuple[PlayedCoordinator, str], tmp_path: Path
):
    coordinator, url = played
    workdir = tmp_path / "h1"
    agent = Agent(url, "h1", "token", workdir, backoff_max=0.2)
    running = asyncio.create_task(agent.run())
    try:
        ws = await coordinator.next()
        await ws.send(start("s1", "echo ran >> count"))
        first = await receive(ws)
        assert isinstance(first, StageResult) and first.stage_id == "s1"
        assert first.outcome.exit_code == 0
        # A stage.start resent while the result is unacked gets the result, not a rerun.
        await ws.send(start("s1", "echo ran >> count"))
        assert await round_trip(ws, 1) == [first]
        await ws.close()  # never acked

        ws = await coordinator.next()
        assert await receive(ws) == first
        assert "s1" in agent.outbox
        await ws.send(encode(Ack(ref="s1")))
        await round_trip(ws, 2)
        assert agent.outbox == {}
        await ws.close()

        # Acked: nothing to resend on the next connection.
        ws = await coordinator.next()
        assert await round_trip(ws, 3) == []
        # A stage.start resent for a finished stage is not run again.
        await ws.send(start("s1", "echo ran >> count"))
        assert await round_trip(ws, 4) == []
        assert "s1" not in agent.running
        await ws.send(encode(Shutdown()))
        assert await asyncio.wait_for(running, TIMEOUT) == 0
    finally:
        running.cancel()
    assert (workdir / "count").read_text() == "ran\n"


async def test_an_ack_carried_by_the_next_stage_start_empties_the_outbox(
    played: tuple[PlayedCoordinator, str], tmp_path: Path
):
    coordinator, url = played
    agent = Agent(url, "h1", "token", tmp_path / "h1", backoff_max=0.2)
    running = asyncio.create_task(agent.run())
    try:
        ws = await coordinator.next()
        await ws.send(start("r:1:c:init", "true"))
        first = await receive(ws)
        assert isinstance(first, StageResult) and first.stage_id == "r:1:c:init"
        assert list(agent.outbox) == ["r:1:c:init"]
        await ws.send(start("r:1:c:run", "true", acks=["r:1:c:init"]))
        second = await receive(ws)
        assert isinstance(second, StageResult) and second.stage_id == "r:1:c:run"
        assert list(agent.outbox) == ["r:1:c:run"]
        await ws.close()  # the second never acked: resent, alone, on the next connection
        ws = await coordinator.next()
        assert await receive(ws) == second
        assert await round_trip(ws, 1) == []
        await ws.send(encode(Shutdown()))
        assert await asyncio.wait_for(running, TIMEOUT) == 0
    finally:
        running.cancel()


def test_the_agent_remembers_only_its_recent_finished_stages(tmp_path: Path):
    recent = RecentIds(3)
    for stage_id in ("a", "b", "c"):
        recent.add(stage_id)
    recent.add("a")  # seen again: the most recent now
    recent.add("d")
    assert len(recent) == 3
    assert "b" not in recent
    assert all(s in recent for s in ("a", "c", "d"))
    agent = Agent("ws://127.0.0.1:9/agent", "h1", "token", tmp_path)
    for n in range(agent.finished.limit + 100):
        agent.finished.add(f"stage{n}")
    assert len(agent.finished) == agent.finished.limit


async def test_log_watches_nobody_collects_do_not_pile_up(
    played: tuple[PlayedCoordinator, str], tmp_path: Path
):
    coordinator, url = played
    agent = Agent(url, "h1", "token", tmp_path / "h1", backoff_max=0.2)
    running = asyncio.create_task(agent.run())
    try:
        ws = await coordinator.next()
        for n in range(WATCHES_KEPT + 6):
            await ws.send(
                encode(
                    StageStart(
                        stage_id=f"s{n}",
                        scope=f"s{n}",
                        task=TaskSpec(
                            type="shell",
                            version=ShellTask.version,
                            payload={"script": "echo x >> app.log"},
                        ),
                        timeout=30,
                        logs=["app.log"],
                    )
                )
            )
            result = await receive(ws)
            assert isinstance(result, StageResult) and result.outcome.exit_code == 0
            await ws.send(encode(Ack(ref=f"s{n}")))
        await round_trip(ws, 1)
        # Only the newest stages' watches are kept for a collect that may come.
        assert list(agent.watches) == [f"s{n}" for n in range(6, WATCHES_KEPT + 6)]
        await ws.send(encode(Shutdown()))
        assert await asyncio.wait_for(running, TIMEOUT) == 0
    finally:
        running.cancel()


async def test_history_batches_are_resent_with_their_ids_until_the_stages_result_is_acked(
    played: tuple[PlayedCoordinator, str], tmp_path: Path
):
    coordinator, url = played
    agent = Agent(url, "h1", "token", tmp_path / "h1", backoff_max=0.2)
    running = asyncio.create_task(agent.run())
    try:
        ws = await coordinator.next()
        await ws.send(start("s1", "phalanx-op --key x --process c write 1 -- true"))
        first = [await receive(ws) for _ in range(3)]
        assert [type(m) for m in first] == [HistoryOps, HistoryOps, StageResult]
        await ws.close()  # never acked: records first, then the result, again
        ws = await coordinator.next()
        assert [await receive(ws) for _ in range(3)] == first
        batches = [m.batch for m in first if isinstance(m, HistoryOps)]
        assert len(set(batches)) == 2
        await ws.send(encode(Ack(ref="s1")))
        await round_trip(ws, 1)
        assert agent.history_out == {}
        await ws.close()
        ws = await coordinator.next()
        assert await round_trip(ws, 2) == []
        await ws.send(encode(Shutdown()))
        assert await asyncio.wait_for(running, TIMEOUT) == 0
    finally:
        running.cancel()
