"""Serving an ASGI app with uvicorn inside the caller's event loop, on a
socket bound before the server starts (so port 0 works and the port is known).

The server is started and stopped here rather than by `Server.serve`, whose
loop looks for a stop request every 0.1 s and whose shutdown sleeps 0.1 s
more, then polls its connections at that pace: a quarter of a second at
the end of every `phalanx run`. Here it stops when asked, and waits only
for what is still open."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from phalanx.coordinator.tcp import listening_socket

STOP_TIMEOUT = 5.0  # seconds open connections have to close when it stops
STOP_POLL = 0.005  # seconds between looks at connections that still close
DATE_EVERY = 1.0  # seconds between updates of the Date header


@contextlib.asynccontextmanager
async def serving(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> AsyncIterator[int]:
    """Serve `app` for the duration of the block (over TLS with a certificate
    and key); yields the bound port."""
    sock = listening_socket(host, port)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        ws="websockets-sansio",
        ws_max_size=64 * 1024 * 1024,
        ws_ping_interval=None,  # heartbeats are the hub's: it must notice a silent agent itself
        # No compression: uvicorn stops reading a connection only after a whole
        # network read is handled, and one read of deflated log output can
        # inflate to hundreds of messages (a run's output held in memory at once).
        ws_per_message_deflate=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    # Not `Server.serve`: besides its slow stop, it takes SIGINT and SIGTERM
    # over, and would close every agent's connection mid-run on a Ctrl-C
    # that the run means to handle itself.
    server = uvicorn.Server(config)
    try:
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
    except BaseException:
        sock.close()
        raise
    dating = asyncio.create_task(_keep_date(server))
    try:
        yield sock.getsockname()[1]
    finally:
        dating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dating
        await _stop(server)
        sock.close()


async def _keep_date(server: uvicorn.Server) -> None:
    """What `Server.main_loop` does besides waiting for a stop: the Date
    header of its answers, once a second (`on_tick` with a counter at 0)."""
    while True:
        await server.on_tick(0)
        await asyncio.sleep(DATE_EVERY)


async def _stop(server: uvicorn.Server) -> None:
    """No new connection; the open ones asked to close, and waited for (up
    to STOP_TIMEOUT) with the tasks that serve them, then cancelled.

    A WebSocket whose handshake the app is still deciding (a daemon's token
    being looked up) is not cut: uvicorn would answer it HTTP 500. It is
    left to the app's answer (a coordinator that stops turns it away with
    a 503) and asked to close once it has one."""
    for listener in server.servers:
        listener.close()
    state = server.server_state
    asked: set[object] = set()

    def ask_to_close() -> None:
        for connection in list(state.connections):
            if connection not in asked and not _deciding(connection):
                asked.add(connection)
                connection.shutdown()

    ask_to_close()
    try:
        async with asyncio.timeout(STOP_TIMEOUT):
            while state.connections or state.tasks:
                if state.tasks:
                    await asyncio.wait(set(state.tasks), timeout=STOP_POLL)
                else:
                    await asyncio.sleep(STOP_POLL)
                ask_to_close()
    except TimeoutError:
        for connection in list(state.connections):
            if connection not in asked:
                connection.shutdown()
        for task in list(state.tasks):
            task.cancel()
    for listener in server.servers:
        await listener.wait_closed()


def _deciding(connection: object) -> bool:
    """Whether `connection` is a WebSocket handshake its app has not
    answered yet (uvicorn's WebSocket protocols say so; HTTP ones do not)."""
    started = getattr(connection, "handshake_initiated", False)
    return bool(started) and not getattr(connection, "handshake_complete", True)
