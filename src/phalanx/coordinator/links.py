"""A daemon's live WebSocket as the coordinator holds it, the same for
agents (`agents.py`) and hypervisor daemons (`hypervisors.py`): one writer
so messages keep their order, frames read as text or bytes alike, and how
long a newcomer has to say hello.

The hub speaks to a `Socket`: what either server hands it, Starlette's
WebSocket under `phalanx serve` (app.py adapts it) or `phalanx run`'s
listener on websockets (listener.py). Neither server is imported here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Protocol

HELLO_TIMEOUT = 10.0


class Connection(Protocol):
    """What a link needs of a live connection (a WebSocket, or a test's fake)."""

    def send(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Disconnected(Exception):
    """The peer went away (or the socket closed) while it was read or written."""

    def __init__(self, code: int = 1000) -> None:
        super().__init__(f"disconnected ({code})")
        self.code = code


class Socket(Protocol):
    """A daemon's WebSocket during and after its handshake, as a server
    hands it to the hub. Failures to read or write raise `Disconnected`."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def client_host(self) -> str | None: ...

    async def accept(self) -> None: ...

    async def refuse(self) -> None:
        """Before `accept`: HTTP 403, which a daemon does not retry."""

    async def deny(self, status: int, text: str) -> None:
        """Before `accept`: this HTTP status and text instead of the handshake."""

    async def receive(self) -> str | bytes:
        """The next frame, text or binary: a binary frame is just another
        message to check (and refuse), not a reason to fail the connection."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class WebSocketLink:
    """One live WebSocket, with a single writer so messages keep their order."""

    def __init__(self, websocket: Socket) -> None:
        self.websocket = websocket
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        with contextlib.suppress(Disconnected, RuntimeError, OSError):
            while True:
                await self.websocket.send_text(await self.queue.get())

    def send(self, data: str) -> None:
        self.queue.put_nowait(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.writer.cancel()
        with contextlib.suppress(RuntimeError, OSError, Disconnected):
            await self.websocket.close(code, reason)
