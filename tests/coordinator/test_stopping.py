"""A daemon that connects while the coordinator stops (an agent whose
connection the stop just closed comes straight back) is turned away with a
clean answer it retries, HTTP 503, not an HTTP 500 and a traceback in the
log: real servers (`phalanx serve`'s uvicorn and `phalanx run`'s listener
on websockets), real sockets, the agent hub behind them."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.app import AGENT_PATH, agent_app
from phalanx.coordinator.listener import Routes, listening
from phalanx.coordinator.server import serving
from tests.eventually import eventually_async


class HeldTokens:
    """A token check that answers only when let go (the service's asks its
    database, which takes a while on a busy machine)."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def _host(self, token: str | None) -> str | None:
        self.asked.set()
        await self.answer.wait()
        return "a" if token == "good" else None

    def host_for(self, token: str | None) -> object:
        return self._host(token)


def refused(port: int) -> bool:
    """Whether a new TCP connection to `port` is refused (the server stopped listening)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


async def close(server: AbstractAsyncContextManager[int]) -> None:
    await server.__aexit__(None, None, None)


async def handshake(url: str) -> None:
    async with connect(url, additional_headers={"Authorization": "Bearer good"}, open_timeout=20):
        pass


Serving = Callable[[AgentHub], AbstractAsyncContextManager[int]]


def on_uvicorn(hub: AgentHub) -> AbstractAsyncContextManager[int]:
    return serving(agent_app(hub), "127.0.0.1", 0)  # `phalanx serve`'s


def on_websockets(hub: AgentHub) -> AbstractAsyncContextManager[int]:
    return listening(Routes({AGENT_PATH: hub.serve}), "127.0.0.1", 0)  # `phalanx run`'s


SERVERS = pytest.mark.parametrize("serve", [on_uvicorn, on_websockets])


@SERVERS
async def test_a_daemon_whose_token_is_checked_while_the_coordinator_stops_gets_503_not_500(
    caplog: pytest.LogCaptureFixture, serve: Serving
) -> None:
    tokens = HeldTokens()
    hub = AgentHub(tokens, heartbeat_timeout=5)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO)
    server = serve(hub)
    port = await server.__aenter__()
    stopping: asyncio.Task[None] | None = None
    try:
        hub.start()
        client = asyncio.create_task(handshake(f"ws://127.0.0.1:{port}{AGENT_PATH}"))
        await asyncio.wait_for(tokens.asked.wait(), 20)
        # As `phalanx serve` stops: its hubs first, then its server, while
        # the newcomer's token is still being looked up.
        await hub.stop()
        stopping = asyncio.create_task(close(server))
        await eventually_async(
            lambda: refused(port), within=20, what="the server to stop listening"
        )
        tokens.answer.set()
        with pytest.raises(InvalidStatus) as got:
            await asyncio.wait_for(client, 20)
        assert got.value.response.status_code == 503
        assert b"stopping" in got.value.response.body
        await asyncio.wait_for(stopping, 20)
    finally:
        tokens.answer.set()
        if stopping is None:
            await close(server)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert hub.links == {}  # nobody was let in


@SERVERS
async def test_a_daemon_arriving_after_the_hub_stopped_gets_503_and_is_not_let_in(
    serve: Serving,
) -> None:
    tokens = HeldTokens()
    tokens.answer.set()
    hub = AgentHub(tokens, heartbeat_timeout=5)  # type: ignore[arg-type]
    async with serve(hub) as port:
        hub.start()
        await hub.stop()
        with pytest.raises(InvalidStatus) as got:
            await handshake(f"ws://127.0.0.1:{port}{AGENT_PATH}")
        assert got.value.response.status_code == 503
    assert not tokens.asked.is_set()  # turned away before its token was looked at
    assert hub.links == {}
