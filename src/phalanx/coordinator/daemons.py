"""What every daemon connected to the coordinator shares, agents
(`agents.py`) and hypervisor daemons (`hypervisors.py`) alike.

A `DaemonLink` is one daemon as the coordinator knows it, under its name:
its live connection (it outlives them), when it was last heard from, why it
is lost, its clock against ours, and the requests it was sent that await
their reply. A `DaemonHub` admits daemons on its WebSocket endpoint (the
bearer token names the daemon, its hello must say that name and the
protocol this coordinator speaks, and a name already live is refused),
pings them, and declares one lost when it stops answering or stays away
for the heartbeat timeout. What each kind of daemon says and what its loss
means is its hub's business: the hooks below.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

from phalanx.coordinator.auth import bearer
from phalanx.coordinator.clock import ClockOffset
from phalanx.coordinator.links import HELLO_TIMEOUT, Connection, Disconnected, Socket, WebSocketLink
from phalanx.wire.messages import MessageErrors, MessagePart, encode

log = logging.getLogger("phalanx.coordinator")

CLOSE_REFUSED = 4001  # application close code: the daemon must not retry
CLOSE_LOST = 1011
ANSWERS_KEPT = 256  # answers to a daemon's own requests kept for its resends
SETTLE_TIMEOUT = 5.0  # seconds the closes left running have when a hub stops
# What refuses a newcomer: a hello that is wrong, malformed, late, or gone.
REFUSED = (ValueError, *MessageErrors, TimeoutError, Disconnected)

# The bearer token's daemon name, or None; a store's answer may be awaitable.
Verifier = Callable[[str | None], Awaitable[str | None] | str | None]

R = TypeVar("R")


class Unanswered(Exception):
    """A request got no reply: its daemon is not connected, went away or is
    lost, or did not answer in time. The text says which."""


class Request(Protocol):
    """A message that asks for a reply carrying the same id."""

    @property
    def request_id(self) -> str: ...

    @property
    def type(self) -> str: ...


class DaemonLink:
    """One daemon under its name: its connection while it has one."""

    kind = "daemon"  # how the log and the errors call it

    def __init__(self, name: str) -> None:
        self.name = name
        self.connection: Connection | None = None
        self.last_seen = 0.0  # loop time
        self.disconnected_at: float | None = None  # loop time
        self.lost: str | None = None
        self.address: str | None = None  # where its live connection comes from
        self.version = ""  # the phalanx version its hello named
        # The token its live connection was admitted with (in memory only):
        # whoever issued it may check that it still stands (a revoke).
        self.token: str | None = None
        # Its clock against ours, from its pongs.
        self.clock = ClockOffset()
        self.ping_seq = 0
        self._waiting: dict[str, tuple[asyncio.Future[Any], type[Any]]] = {}
        # Its own requests (a stage's `phalanx-net`, `phalanx-vm`), each
        # answered once: request id → the answer, or None while it is made.
        self._answers: dict[str, MessagePart | None] = {}

    # --- what a kind of daemon says -----------------------------------------------

    def ping_message(self, seq: int) -> MessagePart:
        raise NotImplementedError

    # --- the connection --------------------------------------------------------------

    def send(self, message: MessagePart) -> None:
        """Send on the live connection; without one the message is dropped
        (what must not be lost is resent on the next attach)."""
        if self.connection is not None:
            self.connection.send(encode(message))

    def attach(self, connection: Connection) -> None:
        self.connection = connection
        self.lost = None
        self.disconnected_at = None
        self.heard()
        self.ping()  # a first clock sample now, not a heartbeat later

    def detach(self, connection: Connection) -> bool:
        """Whether `connection` was the live one (and is gone now)."""
        if self.connection is not connection:
            return False
        self.connection = None
        self.disconnected_at = _now()
        # A reply would come on this connection, and will not now.
        self.fail(f"{self.kind} {self.name} disconnected")
        return True

    def lose(self, reason: str) -> None:
        self.lost = reason
        self.fail(f"{self.kind} {self.name} lost: {reason}")

    def heard(self) -> None:
        self.last_seen = _now()

    def ping(self) -> None:
        """A heartbeat, and a sample of the daemon's clock."""
        if self.connection is None:
            return
        self.ping_seq += 1
        self.clock.pinged(self.ping_seq, _wall())
        self.send(self.ping_message(self.ping_seq))

    def ponged(self, seq: int, clock: float | None) -> None:
        self.clock.ponged(seq, _wall(), clock)

    # --- request and reply -----------------------------------------------------------

    async def request(self, message: Request, reply: type[R], timeout: float) -> R:
        """Send `message` and wait for its `reply` (Unanswered: why none came)."""
        if self.connection is None:
            raise Unanswered(f"{self.kind} {self.name} is {self.lost or 'not connected'}")
        rid = message.request_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = (future, reply)
        self.send(message)  # type: ignore[arg-type]
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise Unanswered(
                f"{self.kind} {self.name} did not answer {message.type} within {timeout:g}s"
            ) from None
        finally:
            self._waiting.pop(rid, None)

    def reply(self, request_id: str, message: object) -> None:
        """A reply came: to the request waiting for it, if one is, and it is
        of the type that request waits for."""
        waiting = self._waiting.get(request_id)
        if waiting is not None and not waiting[0].done() and isinstance(message, waiting[1]):
            waiting[0].set_result(message)

    def fail(self, reason: str) -> None:
        """Every request waiting for a reply gets none."""
        waiting, self._waiting = self._waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                future.set_exception(Unanswered(reason))

    def answer(
        self, request_id: str, make: Callable[[], Coroutine[Any, Any, MessagePart]]
    ) -> asyncio.Task[None] | None:
        """Answer the daemon's own request once: the same request resent
        after a reconnect waits for the answer being made, or is sent the
        one made. The task making a new answer, or None."""
        if request_id in self._answers:
            if (done := self._answers[request_id]) is not None:
                self.send(done)
            return None
        self._answers[request_id] = None
        while len(self._answers) > ANSWERS_KEPT:
            del self._answers[next(iter(self._answers))]

        async def answering() -> None:
            done = await make()
            self._answers[request_id] = done
            self.send(done)  # on the connection it has now

        return asyncio.ensure_future(answering())


L = TypeVar("L", bound=DaemonLink)


class DaemonHub(Generic[L]):
    """Every daemon of one kind connected to a coordinator."""

    kind = "daemon"

    def __init__(self, verify: Verifier | None, heartbeat_timeout: float) -> None:
        self.verify = verify  # None: no daemon of this kind may connect
        self.heartbeat_timeout = heartbeat_timeout
        self.links: dict[str, L] = {}
        self.closing = False  # the coordinator stops: newcomers are turned away
        self._watchdog: asyncio.Task[None] | None = None
        self._later_tasks: set[asyncio.Future[None]] = set()
        # Whether another watcher judges this daemon's loss (a VM's agent
        # whose hypervisor went quiet is lost with it, under its name).
        self.judged_elsewhere: Callable[[str], bool] = lambda name: False

    # --- what each kind of daemon does ------------------------------------------------

    def parse(self, raw: str | bytes) -> MessagePart:
        raise NotImplementedError

    def check_hello(self, hello: MessagePart, name: str) -> None:
        """Raise ValueError saying why this hello, from the daemon the token
        names `name`, is refused."""
        raise NotImplementedError

    def admit(self, name: str, hello: Any) -> L:
        """The link a newly admitted daemon goes on, its hello's facts noted."""
        raise NotImplementedError

    def welcome(self, link: L, hello: Any) -> None:
        """Just attached: tell the daemon what it must know at once."""

    def on_message(self, link: L, message: MessagePart) -> Awaitable[None] | None:
        """A message from `link`'s daemon; an awaitable to finish in the background."""
        raise NotImplementedError

    def on_lost(self, link: L, reason: str) -> None:
        """`link` was just declared lost (its heartbeat, or `lose` called)."""

    # --- lifetime -------------------------------------------------------------------

    def start(self) -> None:
        self.closing = False
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch())

    async def stop_watching(self) -> None:
        self.closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None

    async def settle(self) -> None:
        """Wait (a little) for the closes and writes left running."""
        if self._later_tasks:
            await asyncio.wait(list(self._later_tasks), timeout=SETTLE_TIMEOUT)

    def later(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._later_tasks.add(task)
        task.add_done_callback(self._later_tasks.discard)

    def close_later(self, connection: Connection, code: int, reason: str) -> None:
        self.later(connection.close(code, reason[:120]))

    def disconnect(self, link: L, code: int, reason: str) -> None:
        """Close `link`'s live connection, if any, with `code` and `reason`."""
        if (connection := link.connection) is not None:
            link.detach(connection)
            self.close_later(connection, code, reason)

    # --- heartbeat and loss ------------------------------------------------------------

    @property
    def ping_interval(self) -> float:
        return max(self.heartbeat_timeout / 4, 0.05)

    def alive(self, link: L) -> bool:
        """Whether the link's connection answered within the last heartbeat
        interval (with half an interval's slack for the pong's way back)."""
        return link.connection is not None and _now() - link.last_seen <= self.ping_interval * 1.5

    def quiet(self, link: L, within: float) -> bool:
        """Whether `link`'s daemon said nothing for `within` seconds (or is
        not connected)."""
        return link.connection is None or _now() - link.last_seen > within

    def lose(self, link: L, reason: str) -> None:
        """`link`'s daemon is gone: its connection closed, its requests failed."""
        log.warning("%s %s lost: %s", self.kind, link.name, reason)
        link.lose(reason)  # first: what waits on it hears why
        self.disconnect(link, CLOSE_LOST, f"lost: {reason}")
        self.on_lost(link, reason)

    async def _watch(self) -> None:
        timeout = self.heartbeat_timeout
        while True:
            await asyncio.sleep(self.ping_interval)
            now = _now()
            for link in list(self.links.values()):
                if link.connection is not None:
                    if now - link.last_seen <= timeout:
                        link.ping()
                    elif not self.judged_elsewhere(link.name):
                        self.lose(link, f"no heartbeat for {timeout:g}s")
                elif (
                    link.lost is None
                    and link.disconnected_at is not None
                    and now - link.disconnected_at > timeout
                    and not self.judged_elsewhere(link.name)
                ):
                    self.lose(link, f"disconnected for {timeout:g}s")

    # --- the WebSocket endpoint -----------------------------------------------------

    async def serve(self, websocket: Socket) -> None:
        if self.closing:
            await _stopping(websocket)
            return
        token = bearer(websocket.headers.get("authorization"))
        name: str | None = None
        if self.verify is not None:
            found = self.verify(token)
            name = await found if inspect.isawaitable(found) else found
        if name is None:
            await websocket.refuse()  # before accept: the handshake gets HTTP 403
            return
        if self.closing:  # it stopped while the token was looked up
            await _stopping(websocket)
            return
        await websocket.accept()
        connection = WebSocketLink(websocket)
        try:
            hello = self.parse(await asyncio.wait_for(websocket.receive(), HELLO_TIMEOUT))
            self.check_hello(hello, name)
            if (known := self.links.get(name)) is not None and self.alive(known):
                # Two daemons under one name would take each other's work; the
                # newcomer is told why and does not retry. A connection that
                # has missed its heartbeat is a dead socket its own daemon is
                # replacing, and gives way.
                raise ValueError(f"{_a(self.kind)} named {name} is already connected")
        except REFUSED as exc:
            why = refusal(exc)
            log.warning("refusing %s connection: %s", _a(self.kind), why)
            await connection.close(CLOSE_REFUSED, why[:120])
            return
        link = self.admit(name, hello)
        self.links[name] = link
        self.disconnect(link, 1000, "replaced by a newer connection")
        link.address = websocket.client_host
        link.token = token
        link.attach(connection)
        self.welcome(link, hello)
        try:
            while True:
                raw = await websocket.receive()
                try:
                    message = self.parse(raw)
                except MessageErrors as exc:
                    log.warning(
                        "%s %s sent a malformed message: %s", self.kind, name, str(exc)[:200]
                    )
                    continue
                if (work := self.on_message(link, message)) is not None:
                    self.later(work)
        except (Disconnected, RuntimeError):
            pass
        finally:
            link.detach(connection)
            connection.writer.cancel()


async def _stopping(websocket: Socket) -> None:
    """Turn a newcomer away while the coordinator stops: HTTP 503 before the
    handshake completes, which a daemon retries (a 403 would end it for good,
    and a coordinator started again wants it back)."""
    await websocket.deny(503, "the coordinator is stopping")


def refusal(exc: Exception) -> str:
    """One line on why a hello was refused. msgspec stops at the first
    problem, so a hostile hello failing thousands of ways (a label each)
    still makes one short line for the log and the close reason."""
    return str(exc)[:200]


def new_request_id() -> str:
    return uuid.uuid4().hex


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _now() -> float:
    return asyncio.get_running_loop().time()


def _wall() -> float:
    return time.time()
