"""The agent's local socket, which the in-stage commands (`phalanx-sync`,
`-send`, `-wait`, `-net`, `-vm`, `phalanx.history.op`) ask: one JSON line in,
one out. The agent runs in-process against a small real WebSocket server
that plays the coordinator; the requests come over the real socket, as a
stage's would, or from a real stage."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from phalanx.host.daemon import Agent
from phalanx.host.workdir import socket_dir
from phalanx.wire.messages import KvSend, Shutdown, SyncArrive, SyncRelease, encode
from tests.eventually import eventually_async
from tests.host.test_daemon import PlayedCoordinator, played, round_trip
from tests.host.test_daemon_stages import Link, link, start

__all__ = ["link", "played"]  # the fixtures, used by name

TIMEOUT = 10.0


async def ask(agent: Agent, line: bytes) -> dict[str, Any]:
    """One raw request line on the agent's socket, and its answer."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_unix_connection(str(agent.socket_path)), TIMEOUT
    )
    try:
        writer.write(line)
        await writer.drain()
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), TIMEOUT))
        return answer
    finally:
        writer.close()


async def request(agent: Agent, message: dict[str, Any]) -> dict[str, Any]:
    return await ask(agent, json.dumps(message).encode() + b"\n")


async def test_the_socket_is_in_a_folder_only_the_agents_user_may_enter(
    link: tuple[Link, Agent],
) -> None:
    _, agent = link
    folder = agent.socket_path.parent
    assert folder == socket_dir(agent.workdir)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert folder.stat().st_uid == os.getuid()
    assert stat.S_ISSOCK(agent.socket_path.stat().st_mode)
    # Short enough for a unix socket's path whatever the workdir's length.
    assert len(str(agent.socket_path).encode()) < 100


async def test_a_send_reaches_the_coordinator_with_the_stage_it_came_from(
    link: tuple[Link, Agent],
) -> None:
    wire, agent = link
    message = {"op": "send", "key": "port", "value": "4242", "stage_id": "r1:1:case:s9"}
    assert await request(agent, message) == {"ok": True}
    sent = await wire.next(KvSend)
    assert sent == KvSend(stage_id="r1:1:case:s9", key="port", value="4242")


async def test_an_unknown_request_is_refused_by_its_name_and_nothing_crosses(
    link: tuple[Link, Agent],
) -> None:
    wire, agent = link
    answer = await request(agent, {"op": "teleport", "stage_id": "s1"})
    assert answer == {"ok": False, "error": "unknown request 'teleport'"}
    assert await round_trip(wire.ws, 1) == []  # the coordinator heard nothing of it
    assert agent.requests == {}


async def test_a_garbled_request_gets_an_error_and_the_socket_serves_on(
    link: tuple[Link, Agent],
) -> None:
    wire, agent = link
    answer = await ask(agent, b"this is not json\n")
    assert answer["ok"] is False and answer["error"]
    # a request without the fields its op needs
    answer = await request(agent, {"op": "sync"})
    assert answer["ok"] is False and "name" in answer["error"]
    assert await request(agent, {"op": "send", "key": "k", "value": "v"}) == {"ok": True}
    assert await wire.next(KvSend) == KvSend(stage_id="", key="k", value="v")


async def test_a_net_fault_that_is_not_one_is_refused_here_with_why(
    link: tuple[Link, Agent],
) -> None:
    wire, agent = link
    answer = await request(agent, {"op": "net", "action": "partition", "stage_id": "s1"})
    assert answer["ok"] is False and "groups" in answer["error"]
    assert "http" not in answer["error"]  # one line per problem, without pydantic's links
    answer = await request(agent, {"op": "net", "action": "explode", "stage_id": "s1"})
    assert answer["ok"] is False
    assert await round_trip(wire.ws, 2) == []  # nothing was asked of the coordinator


async def test_history_records_that_are_not_records_are_refused(
    link: tuple[Link, Agent],
) -> None:
    wire, agent = link
    answer = await request(agent, {"op": "history", "records": "nonsense", "stage_id": "s1"})
    assert answer["ok"] is False and answer["error"]
    assert await round_trip(wire.ws, 3) == []


async def test_a_barrier_a_stage_gave_up_on_is_forgotten_once_the_coordinator_answers(
    link: tuple[Link, Agent],
) -> None:
    wire, agent = link
    await wire.send(start("s1", 'phalanx-sync never --timeout 0.5 || echo "exit=$?"'))
    arrived = await wire.next(SyncArrive)
    assert isinstance(arrived, SyncArrive) and arrived.name == "never"
    result = await wire.result("s1")
    assert result.outcome.exit_code == 0
    said = wire.output["s1"].decode()
    assert "exit=1" in said and "timed out after 0.5s waiting for 'never'" in said
    # Still asked of the coordinator (resent on a reconnect) until it answers;
    # its answer, with nobody left to hear it, is dropped.
    assert arrived.request_id in agent.requests
    await wire.send(SyncRelease(request_id=arrived.request_id))
    await eventually_async(lambda: agent.requests == {}, within=TIMEOUT, what="no request left")
    await wire.send(start("s2", "echo still here"))
    assert (await wire.result("s2")).outcome.exit_code == 0
    assert wire.output["s2"] == b"still here\n"


async def test_the_socket_folder_goes_with_the_agent(
    played: tuple[PlayedCoordinator, str], tmp_path: Path
) -> None:
    coordinator, url = played
    workdir = tmp_path / "h1"
    # What a killed agent left: its socket's path, taken by a stale file.
    folder = socket_dir(workdir)
    folder.mkdir(mode=0o700)
    (folder / "agent.sock").write_text("stale")
    agent = Agent(url, "h1", "token", workdir, backoff_max=0.2)
    running = asyncio.create_task(agent.run())
    try:
        ws = await coordinator.next()
        # The agent serves on the path the stale file held.
        assert await request(agent, {"op": "nothing"}) == {
            "ok": False,
            "error": "unknown request 'nothing'",
        }
        await ws.send(encode(Shutdown()))
        assert await asyncio.wait_for(running, 30) == 0
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert not folder.exists()


def in_stage_command(
    command: str, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    code = f"import sys; from phalanx.host.syncclient import main; sys.exit(main({command!r}, {args!r}))"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )


def test_the_commands_outside_a_stage_say_there_is_no_agent_and_exit_3(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PHALANX_AGENT_SOCKET"}
    done = in_stage_command("sync", ["ready"], env)
    assert done.returncode == 3
    assert "phalanx-sync: cannot reach the agent: PHALANX_AGENT_SOCKET is not set" in done.stderr
    # A socket that is not there (the agent has gone).
    env["PHALANX_AGENT_SOCKET"] = str(tmp_path / "gone.sock")
    done = in_stage_command("wait", ["port"], env)
    assert done.returncode == 3
    assert "phalanx-wait: cannot reach the agent" in done.stderr


def test_an_unknown_in_stage_command_is_a_usage_error() -> None:
    done = in_stage_command("teleport", [], dict(os.environ))
    assert done.returncode == 2
    assert "unknown coordination command 'teleport'" in done.stderr
