"""The coordinator's end of the agent protocol.

An `AgentLink` is one host as the engine sees it (a `HostSession`); it
outlives the WebSocket connections its agent opens and closes. The
`AgentHub` authenticates connections, routes messages to links, answers
in-stage coordination through the `Rendezvous`, sends heartbeats, and
declares an agent lost when it stops answering.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from phalanx.coordinator.auth import TokenBook, bearer
from phalanx.engine.rendezvous import Answer, Rendezvous
from phalanx.engine.session import CollectedLog, StageOrder, StageReport, StageScope
from phalanx.tasks import Outcome
from phalanx.wire.messages import (
    PROTOCOL_VERSION,
    Ack,
    AgentMessage,
    Hello,
    KvSend,
    KvValue,
    KvWait,
    LogsCollect,
    LogsResult,
    Ping,
    Pong,
    Shutdown,
    StageCancel,
    StageOutput,
    StageResult,
    StageStart,
    SyncArrive,
    SyncRelease,
    encode,
    parse_agent_message,
    task_spec,
)

log = logging.getLogger("phalanx.coordinator")

HELLO_TIMEOUT = 10.0
LOGS_TIMEOUT = 60.0
CLOSE_REFUSED = 4001  # application close code: the agent must not retry

Journal = Callable[[str, StageResult], None]


def _now() -> datetime:
    return datetime.now(UTC)


class _Connection:
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


@dataclass
class _Pending:
    order: StageOrder
    future: asyncio.Future[StageReport]
    on_output: Callable[[str], None]
    sent_at: datetime


class AgentLink:
    def __init__(self, hub: AgentHub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.connection: _Connection | None = None
        self.connected = asyncio.Event()
        self.last_seen = 0.0
        self.disconnected_at: float | None = None
        self.lost: str | None = None
        self.pending: dict[str, _Pending] = {}
        self.applied: set[str] = set()
        self.log_requests: dict[str, asyncio.Future[list[CollectedLog]]] = {}

    # --- HostSession ----------------------------------------------------------------

    async def run_stage(self, order: StageOrder, on_output: Callable[[str], None]) -> StageReport:
        sent_at = _now()
        if self.lost is not None and self.connection is None:
            return self._lost_report(sent_at, self.lost)
        future: asyncio.Future[StageReport] = asyncio.get_running_loop().create_future()
        self.pending[order.stage_id] = _Pending(order, future, on_output, sent_at)
        self._send(_start_message(order))
        # The agent enforces the timeout and reports it; this one only guards
        # against an agent that neither reports nor misses a heartbeat.
        guard = order.timeout + 2 * self.hub.heartbeat_timeout + 5
        try:
            return await asyncio.wait_for(asyncio.shield(future), guard)
        except TimeoutError:
            self._send(StageCancel(stage_id=order.stage_id))
            return self._lost_report(sent_at, f"the agent did not report within {guard:g}s")
        finally:
            self.pending.pop(order.stage_id, None)

    async def collect_logs(self, stage_id: str) -> list[CollectedLog]:
        if self.connection is None:
            return []
        rid = uuid.uuid4().hex
        future: asyncio.Future[list[CollectedLog]] = asyncio.get_running_loop().create_future()
        self.log_requests[rid] = future
        self._send(LogsCollect(request_id=rid, stage_id=stage_id))
        try:
            return await asyncio.wait_for(future, LOGS_TIMEOUT)
        except TimeoutError:
            return []
        finally:
            self.log_requests.pop(rid, None)

    # --- connection life -------------------------------------------------------------

    def attach(self, connection: _Connection) -> None:
        self.connection = connection
        self.lost = None
        self.disconnected_at = None
        self.last_seen = asyncio.get_running_loop().time()
        self.connected.set()
        # A stage.start sent while the agent was away may never have arrived;
        # the agent ignores one it already has.
        for pending in self.pending.values():
            self._send(_start_message(pending.order))

    def detach(self, connection: _Connection) -> None:
        if self.connection is connection:
            self.connection = None
            self.connected.clear()
            self.disconnected_at = asyncio.get_running_loop().time()

    def lose(self, reason: str) -> None:
        self.lost = reason
        for stage_id, pending in list(self.pending.items()):
            if not pending.future.done():
                pending.future.set_result(self._lost_report(pending.sent_at, reason))
            self.hub.deliver(self.hub.rendezvous.host_done(stage_id, self.name))
        for future in self.log_requests.values():
            if not future.done():
                future.set_result([])

    def _lost_report(self, started: datetime, reason: str) -> StageReport:
        return StageReport(Outcome(error=f"agent lost: {reason}"), started, _now())

    def _send(self, message: object) -> None:
        if self.connection is not None:
            self.connection.send(encode(message))  # type: ignore[arg-type]

    # --- messages from the agent ------------------------------------------------------

    def handle(self, message: AgentMessage) -> None:
        self.last_seen = asyncio.get_running_loop().time()
        match message:
            case StageOutput(stage_id=stage_id, data=data):
                if pending := self.pending.get(stage_id):
                    pending.on_output(data)
            case StageResult():
                self._result(message)
            case SyncArrive(stage_id=stage_id, name=name, request_id=rid):
                self.hub.deliver(self.hub.rendezvous.arrive(stage_id, self.name, name, rid))
            case KvSend(stage_id=stage_id, key=key, value=value):
                self.hub.deliver(self.hub.rendezvous.send(stage_id, key, value))
            case KvWait(stage_id=stage_id, key=key, request_id=rid):
                self.hub.deliver(self.hub.rendezvous.wait(stage_id, self.name, key, rid))
            case LogsResult(request_id=rid, files=files):
                if (future := self.log_requests.get(rid)) and not future.done():
                    future.set_result(
                        [
                            CollectedLog(
                                f.path, base64.b64decode(f.content_b64), f.truncated, f.missing
                            )
                            for f in files
                        ]
                    )
            case Pong() | Ack() | Hello():
                pass

    def _result(self, message: StageResult) -> None:
        stage_id = message.stage_id
        if stage_id not in self.applied:
            # Written before it is acked: an ack means the result is safe.
            self.hub.journal(self.name, message)
            self.applied.add(stage_id)
            pending = self.pending.get(stage_id)
            if pending is not None and not pending.future.done():
                pending.future.set_result(
                    StageReport(message.outcome, message.started_at, message.ended_at)
                )
            self.hub.deliver(self.hub.rendezvous.host_done(stage_id, self.name))
        self._send(Ack(ref=stage_id))


def _start_message(order: StageOrder) -> StageStart:
    return StageStart(
        stage_id=order.stage_id,
        task=task_spec(order.task),
        env=order.env,
        timeout=order.timeout,
        logs=list(order.logs),
    )


class AgentHub:
    """Every agent link of a coordinator; also the engine's `Fleet`."""

    def __init__(
        self,
        tokens: TokenBook,
        *,
        heartbeat_timeout: float = 10.0,
        journal: Journal | None = None,
    ) -> None:
        self.tokens = tokens
        self.heartbeat_timeout = heartbeat_timeout
        self.journal: Journal = journal or (lambda host, result: None)
        self.links: dict[str, AgentLink] = {}
        self.rendezvous = Rendezvous()
        self._watchdog: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def link(self, name: str) -> AgentLink:
        if name not in self.links:
            self.links[name] = AgentLink(self, name)
        return self.links[name]

    # --- Fleet --------------------------------------------------------------------

    def session(self, host: str) -> AgentLink:
        return self.link(host)

    def begin_stage(self, scope: StageScope) -> None:
        self.rendezvous.begin_stage(scope.stage_id, scope.hosts, scope.kv_scope)

    def end_stage(self, stage_id: str) -> None:
        self.rendezvous.end_stage(stage_id)

    def deliver(self, answers: list[Answer]) -> None:
        for answer in answers:
            link = self.links.get(answer.host)
            if link is None:
                continue
            if answer.key is None:
                link._send(SyncRelease(request_id=answer.request_id))
            else:
                link._send(
                    KvValue(request_id=answer.request_id, key=answer.key, value=answer.value)
                )

    # --- lifetime ------------------------------------------------------------------

    def start(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        for link in self.links.values():
            link._send(Shutdown())
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None

    def _close_later(self, connection: _Connection, code: int, reason: str) -> None:
        task = asyncio.create_task(connection.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def wait_connected(self, hosts: list[str], timeout: float) -> list[str]:
        """Wait until every host's agent is connected; return those that are not."""
        links = [self.link(h) for h in hosts]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for link in links:
                    await link.connected.wait()
        return [link.name for link in links if not link.connected.is_set()]

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        interval = max(self.heartbeat_timeout / 4, 0.05)
        seq = 0
        while True:
            await asyncio.sleep(interval)
            seq += 1
            now = loop.time()
            for link in list(self.links.values()):
                if link.connection is not None:
                    if now - link.last_seen > self.heartbeat_timeout:
                        reason = f"no heartbeat for {self.heartbeat_timeout:g}s"
                        log.warning("agent %s lost: %s", link.name, reason)
                        connection = link.connection
                        link.detach(connection)
                        link.lose(reason)
                        self._close_later(connection, 1011, "heartbeat timeout")
                    else:
                        link._send(Ping(seq=seq))
                elif (
                    link.lost is None
                    and link.disconnected_at is not None
                    and now - link.disconnected_at > self.heartbeat_timeout
                ):
                    reason = f"disconnected for {self.heartbeat_timeout:g}s"
                    log.warning("agent %s lost: %s", link.name, reason)
                    link.lose(reason)

    # --- the WebSocket endpoint -------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        host = self.tokens.host_for(bearer(websocket.headers.get("authorization")))
        if host is None:
            await websocket.close(code=1008)  # before accept: the handshake gets HTTP 403
            return
        await websocket.accept()
        connection = _Connection(websocket)
        try:
            hello = await asyncio.wait_for(websocket.receive_text(), HELLO_TIMEOUT)
            first = parse_agent_message(hello)
            if not isinstance(first, Hello):
                raise ValueError("the first message must be hello")
            if first.version != PROTOCOL_VERSION:
                raise ValueError(
                    f"protocol version {first.version} is not supported (this coordinator speaks {PROTOCOL_VERSION})"
                )
            if first.host != host:
                raise ValueError(f"this token belongs to {host!r}, not {first.host!r}")
        except (ValueError, ValidationError, TimeoutError, WebSocketDisconnect) as exc:
            log.warning("refusing an agent connection: %s", exc)
            await connection.close(CLOSE_REFUSED, str(exc)[:120])
            return
        link = self.link(host)
        if link.connection is not None:
            old = link.connection
            link.detach(old)
            self._close_later(old, 1000, "replaced by a newer connection")
        link.attach(connection)
        try:
            while True:
                raw = await websocket.receive_text()
                try:
                    message = parse_agent_message(raw)
                except ValidationError as exc:
                    log.warning("agent %s sent a malformed message: %s", host, exc.errors()[:1])
                    continue
                link.handle(message)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            link.detach(connection)
            connection.writer.cancel()
