"""The coordinator's endpoints on Starlette (`phalanx serve` mounts them
beside its API and web UI): a daemons' hub behind a WebSocket route, its
sockets adapted to what the hub speaks (`links.Socket`). `phalanx run`
serves the same hub and suite files on its own listener (listener.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.links import Disconnected, Socket
from phalanx.host.endpoint import AGENT_PATH, HYPERVISOR_PATH

__all__ = ["AGENT_PATH", "HYPERVISOR_PATH", "agent_app", "agent_routes", "daemon_route"]


class StarletteSocket:
    """A Starlette WebSocket as the hub speaks to one."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    @property
    def headers(self) -> Mapping[str, str]:
        return self.websocket.headers

    @property
    def client_host(self) -> str | None:
        client = self.websocket.client
        return client.host if client is not None else None

    async def accept(self) -> None:
        await self.websocket.accept()

    async def refuse(self) -> None:
        await self.websocket.close(code=1008)  # before accept: the handshake gets HTTP 403

    async def deny(self, status: int, text: str) -> None:
        await self.websocket.send_denial_response(PlainTextResponse(text, status_code=status))

    async def receive(self) -> str | bytes:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise Disconnected(message.get("code", 1000))
        text: str | None = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def send_text(self, data: str) -> None:
        try:
            await self.websocket.send_text(data)
        except WebSocketDisconnect as exc:
            raise Disconnected(exc.code) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self.websocket.close(code, reason)
        except WebSocketDisconnect as exc:
            raise Disconnected(exc.code) from exc


def daemon_route(path: str, serve: Callable[[Socket], Awaitable[None]]) -> WebSocketRoute:
    """A hub's `serve` on Starlette, at `path`."""

    async def endpoint(websocket: WebSocket) -> None:
        await serve(StarletteSocket(websocket))

    return WebSocketRoute(path, endpoint)


def agent_routes(hub: AgentHub) -> list[WebSocketRoute]:
    return [daemon_route(AGENT_PATH, hub.serve)]


def agent_app(hub: AgentHub, routes: Sequence[BaseRoute] = ()) -> Starlette:
    return Starlette(routes=[*agent_routes(hub), *routes])
