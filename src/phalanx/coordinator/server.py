"""Serving an ASGI app with uvicorn inside the caller's event loop, on a
socket bound before the server starts (so port 0 works and the port is known)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

START_TIMEOUT = 10.0


class _EmbeddedServer(uvicorn.Server):
    """A server inside a process that handles its own signals: uvicorn's
    would take SIGINT and SIGTERM over, close every agent's connection
    mid-run, and raise the signal again once it has stopped."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and
    # accepted sockets inherit it. Without it Nagle holds every second small
    # message until the peer's delayed ACK, 40 ms per barrier.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
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
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the server stopped while starting")
                await asyncio.sleep(0.005)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 5.0)
        sock.close()
