"""The embedded coordinator's listener (`phalanx run`): the daemons' hub and
the suite files, served on websockets' own asyncio server.

`phalanx serve` mounts the same hub and files on Starlette under uvicorn
(app.py, scripts.py's `script_routes`); those cost `phalanx run` about a
sixth of its own CPU here (uvicorn imports click, its reloaders and their
supervisors; Starlette and anyio) for one WebSocket
route and three GET routes. What a daemon meets is decided in one place
either way, the hub (`DaemonHub.serve`, through `links.Socket`): the same
handshake, the same denials (403, 503) and close codes.

A WebSocket's handshake waits for the hub's decision (its `accept`, or its
refusal before one); a GET for a suite file is answered with the whole
file, read in a thread (at most MAX_SCRIPT; `phalanx serve` streams them).
websockets speaks GET only; anything else gets 400."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import mimetypes
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from phalanx.coordinator import scripts
from phalanx.coordinator.links import Disconnected, Socket
from phalanx.coordinator.tcp import listening_socket

log = logging.getLogger("phalanx.coordinator")

STOP_TIMEOUT = 5.0  # seconds open connections have to close when it stops
MAX_MESSAGE = 64 * 1024 * 1024  # bytes: as uvicorn's ws_max_size for `phalanx serve`

Endpoint = Callable[[Socket], Awaitable[None]]


@dataclass
class Routes:
    """What the listener serves: a hub's `serve` per WebSocket path, and
    the suite files (None: none)."""

    sockets: Mapping[str, Endpoint] = field(default_factory=dict)
    files: scripts.SuiteFiles | None = None


@contextlib.asynccontextmanager
async def listening(routes: Routes, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[int]:
    """Serve `routes` for the duration of the block; yields the bound port."""
    bridge = _Bridge(routes)
    sock = listening_socket(host, port)
    try:
        server = await serve(
            bridge.opened,
            sock=sock,
            process_request=bridge.request,
            max_size=MAX_MESSAGE,
            ping_interval=None,  # heartbeats are the hub's: it must notice a silent agent itself
            compression=None,  # as `phalanx serve`: a run's output is not held inflated at once
            logger=log,
        )
    except BaseException:
        sock.close()
        raise
    try:
        yield sock.getsockname()[1]
    finally:
        await _stop(server)
        sock.close()


async def _stop(server: Server) -> None:
    """No new connection; a handshake still waiting for the hub's decision
    is answered 503 once it has one (a daemon retries that); open WebSockets
    asked to close, and waited for up to STOP_TIMEOUT, then cut."""
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT)
    except TimeoutError:
        for connection in list(server.connections):
            connection.transport.abort()


def _response(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> Response:
    fields = Headers(headers or {})
    fields["Connection"] = "close"  # websockets closes the connection after it
    fields["Content-Length"] = str(len(body))
    return Response(status, http.HTTPStatus(status).phrase, fields, body)


def _text(status: int, text: str) -> Response:
    return _response(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})


class _Bridge:
    """websockets' handshakes and connections, handed to the routes."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.sockets: dict[ServerConnection, _Socket] = {}

    async def request(self, connection: ServerConnection, request: Request) -> Response | None:
        """The handshake's answer: None lets a WebSocket the hub accepted open."""
        path = unquote(request.path.partition("?")[0])
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            return await self._get(connection, path)
        endpoint = self.routes.sockets.get(path)
        if endpoint is None:
            return _response(403)  # as Starlette answers a WebSocket no route takes
        peer = _Socket(connection, request, endpoint)
        self.sockets[connection] = peer
        peer.task.add_done_callback(lambda _: self.sockets.pop(connection, None))
        return await peer.decision

    async def opened(self, connection: ServerConnection) -> None:
        """An accepted WebSocket, open: the hub has it until it returns."""
        peer = self.sockets.pop(connection, None)
        if peer is not None:
            peer.open.set()
            await peer.task

    async def _get(self, connection: ServerConnection, path: str) -> Response:
        files = self.routes.files
        matched = scripts.match(path) if files is not None else None
        if files is None or matched is None:
            return _text(404, "Not Found")
        route, params = matched
        client = connection.remote_address
        answer = await files.answer(
            route, params, (client[0], client[1]), connection.local_address[1]
        )
        if answer.file is None:
            return _text(answer.status, answer.text)
        try:
            body = await asyncio.to_thread(answer.file.read_bytes)
        except OSError:
            return _text(404, f"phalanx: {answer.file.name} cannot be read\n")
        if not answer.download:
            return _response(200, body, {"Content-Type": "text/plain; charset=utf-8"})
        name = answer.file.name
        quoted = quote(name)
        return _response(
            200,
            body,
            {
                "Content-Type": mimetypes.guess_type(name)[0] or "text/plain",
                "Content-Disposition": (
                    f'attachment; filename="{name}"'
                    if quoted == name
                    else f"attachment; filename*=utf-8''{quoted}"
                ),
            },
        )


class _Socket:
    """One daemon's WebSocket as the hub speaks to it (`links.Socket`)."""

    def __init__(self, connection: ServerConnection, request: Request, endpoint: Endpoint) -> None:
        self.connection = connection
        self.request = request
        self.decision: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        self.open = asyncio.Event()  # the handshake's 101 went out
        self.task = asyncio.create_task(self._run(endpoint))

    async def _run(self, endpoint: Endpoint) -> None:
        try:
            await endpoint(self)
        except Exception:
            log.exception("the coordinator's WebSocket endpoint failed")
            self._decide(_response(500))
            if self.open.is_set():
                await self.connection.close(1011)
        finally:
            self._decide(_response(403))  # returned without a word: refused

    def _decide(self, answer: Response | None) -> None:
        if not self.decision.done():
            self.decision.set_result(answer)

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    @property
    def client_host(self) -> str | None:
        return str(self.connection.remote_address[0])

    async def accept(self) -> None:
        self._decide(None)

    async def refuse(self) -> None:
        self._decide(_response(403))

    async def deny(self, status: int, text: str) -> None:
        self._decide(_text(status, text))

    async def _opened(self) -> None:
        """Wait for the handshake to complete: it may still be turned away
        after the accept (a 503 when the server closes meanwhile)."""
        if self.open.is_set():
            return
        waiting = asyncio.ensure_future(self.open.wait())
        closing = asyncio.ensure_future(self.connection.wait_closed())
        try:
            await asyncio.wait({waiting, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            closing.cancel()
        if not self.open.is_set():
            raise Disconnected(1006)

    async def receive(self) -> str | bytes:
        await self._opened()
        try:
            return await self.connection.recv()
        except ConnectionClosed as closed:
            raise Disconnected(closed.rcvd.code if closed.rcvd else 1006) from closed

    async def send_text(self, data: str) -> None:
        await self._opened()
        try:
            await self.connection.send(data)
        except ConnectionClosed as closed:
            raise Disconnected(closed.rcvd.code if closed.rcvd else 1006) from closed

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._opened()
        await self.connection.close(code, reason)
