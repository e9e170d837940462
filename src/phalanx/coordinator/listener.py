"""The embedded coordinator's listener (`phalanx run`): the coordinator's
ASGI app, the very one `phalanx serve` runs under uvicorn, served on
websockets' own asyncio server instead.

uvicorn costs `phalanx run` a tenth of its start (it imports click, its
reloaders and their supervisors, logging.config, ...), for one WebSocket
route and three GET routes. The hub (coordinator/daemons.py) and the suite
files' routes (coordinator/scripts.py) stay as they are, behind the ASGI
interface: only how the bytes come in differs, so an agent meets the same
handshake, the same denials (403, 503) and the same close codes either way.

A WebSocket's handshake waits for the app's decision (its `accept`, or its
close or denial before one); a plain GET is answered with the app's whole
response once it is made (the suite files a run's stages fetch: small, and
at most MAX_SCRIPT). websockets speaks GET only; anything else gets 400."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger("phalanx.coordinator")

Message = MutableMapping[str, Any]
App = Callable[[Any, Any, Any], Awaitable[None]]  # ASGI: scope, receive, send

STOP_TIMEOUT = 5.0  # seconds open connections have to close when it stops
MAX_MESSAGE = 64 * 1024 * 1024  # bytes: as uvicorn's ws_max_size for `phalanx serve`


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (`host`, `port`; 0: any free port), not yet listening."""
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and
    # accepted sockets inherit it. Without it Nagle holds every second small
    # message until the peer's delayed ACK, 40 ms per barrier.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def listening(app: App, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[int]:
    """Serve `app` for the duration of the block; yields the bound port."""
    bridge = _Bridge(app)
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
    """No new connection; a handshake still waiting for the app's decision
    is answered 503 once it has one (a daemon retries that); open WebSockets
    asked to close, and waited for up to STOP_TIMEOUT, then cut."""
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT)
    except TimeoutError:
        for connection in list(server.connections):
            connection.transport.abort()


def _scope(kind: str, connection: ServerConnection, request: Request) -> Message:
    path, _, query = request.path.partition("?")
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "ws" if kind == "websocket" else "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.raw_items()
        ],
        "client": tuple(connection.remote_address[:2]),
        "server": tuple(connection.local_address[:2]),
        "subprotocols": [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p
        ],
        "extensions": {"websocket.http.response": {}} if kind == "websocket" else {},
        "state": {},
    }


def _response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
    fields = Headers(
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in headers
        if name.lower() != b"connection"
    )
    fields["Connection"] = "close"  # websockets closes the connection after it
    if "Content-Length" not in fields:
        fields["Content-Length"] = str(len(body))
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return Response(status, phrase, fields, body)


class _Bridge:
    """websockets' handshake and connections, spoken to an ASGI app."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.sessions: dict[ServerConnection, _WebSocket] = {}

    async def request(self, connection: ServerConnection, request: Request) -> Response | None:
        """The handshake's answer: None lets a WebSocket the app accepted open."""
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            return await _http(self.app, _scope("http", connection, request))
        session = _WebSocket(self.app, _scope("websocket", connection, request), connection)
        self.sessions[connection] = session
        session.task.add_done_callback(lambda _: self.sessions.pop(connection, None))
        return await session.decision

    async def opened(self, connection: ServerConnection) -> None:
        """An accepted WebSocket, open: the app has it until it returns."""
        session = self.sessions.pop(connection, None)
        if session is not None:
            session.open.set()
            await session.task


class _WebSocket:
    """One WebSocket as the app sees it (ASGI's websocket messages)."""

    def __init__(self, app: App, scope: Message, connection: ServerConnection) -> None:
        self.connection = connection
        self.decision: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        self.open = asyncio.Event()  # the handshake's 101 went out
        self.connected = False  # the app was told of the connection
        self.denial: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.body: list[bytes] = []
        self.task = asyncio.create_task(self._run(app, scope))

    async def _run(self, app: App, scope: Message) -> None:
        try:
            await app(scope, self.receive, self.send)
        except Exception:
            log.exception("the coordinator's WebSocket endpoint failed")
            self._decide(_response(500, [], b""))
            if self.open.is_set():
                await self.connection.close(1011)
        finally:
            # An app that returned without a word refuses the connection.
            self._decide(_response(403, [], b""))

    def _decide(self, answer: Response | None) -> None:
        if not self.decision.done():
            self.decision.set_result(answer)

    async def _opened(self) -> bool:
        """Whether the handshake completed: it may still be turned away
        after the app's accept (a 503 when the server closes meanwhile)."""
        if not self.open.is_set():
            waiting = asyncio.ensure_future(self.open.wait())
            closing = asyncio.ensure_future(self.connection.wait_closed())
            try:
                await asyncio.wait({waiting, closing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                closing.cancel()
        return self.open.is_set()

    async def receive(self) -> Message:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        if not await self._opened():
            return {"type": "websocket.disconnect", "code": 1006}
        try:
            data = await self.connection.recv()
        except ConnectionClosed as closed:
            return {
                "type": "websocket.disconnect",
                "code": closed.rcvd.code if closed.rcvd else 1006,
            }
        if isinstance(data, str):
            return {"type": "websocket.receive", "text": data}
        return {"type": "websocket.receive", "bytes": data}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            self._decide(None)
        elif kind == "websocket.http.response.start":
            self.denial = (message["status"], list(message.get("headers", [])))
        elif kind == "websocket.http.response.body":
            self.body.append(message.get("body", b""))
            if not message.get("more_body", False) and self.denial is not None:
                self._decide(_response(*self.denial, b"".join(self.body)))
        elif not self.decision.done():
            if kind == "websocket.close":  # before accept: HTTP 403, as uvicorn answers
                self._decide(_response(403, [], b""))
        elif not await self._opened():
            raise OSError("the WebSocket is closed")
        elif kind == "websocket.send":
            text = message.get("text")
            try:
                await self.connection.send(text if text is not None else message["bytes"])
            except ConnectionClosed as exc:
                raise OSError("the WebSocket is closed") from exc
        elif kind == "websocket.close":
            await self.connection.close(message.get("code", 1000), message.get("reason") or "")


async def _http(app: App, scope: Message) -> Response:
    """The app's whole answer to a GET."""
    status, headers, body = 500, [], []
    sent = False
    answered = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))
            if not message.get("more_body", False):
                answered.set()

    try:
        await app(scope, receive, send)
    except Exception:
        log.exception("the coordinator's HTTP endpoint failed")
        return _response(500, [], b"")
    finally:
        answered.set()
    return _response(status, headers, b"".join(body))
