"""A daemon's live WebSocket as the coordinator holds it, the same for
agents (`agents.py`) and hypervisor daemons (`hypervisors.py`): one writer
so messages keep their order, frames read as text or bytes alike, and how
long a newcomer has to say hello."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

HELLO_TIMEOUT = 10.0


class Connection(Protocol):
    """What a link needs of a live connection (a WebSocket, or a test's fake)."""

    def send(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class WebSocketLink:
    """One live WebSocket, with a single writer so messages keep their order."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                await self.websocket.send_text(await self.queue.get())

    def send(self, data: str) -> None:
        self.queue.put_nowait(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.writer.cancel()
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await self.websocket.close(code, reason)


async def receive(websocket: WebSocket) -> str | bytes:
    """The next frame, text or binary: a binary frame is just another
    message to check (and refuse), not a reason to fail the connection."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text: str | None = message.get("text")
    return text if text is not None else message.get("bytes") or b""
