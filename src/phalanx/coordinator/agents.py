"""The coordinator's end of the agent protocol, for as long as the server runs.

An `AgentLink` is one host's agent as the coordinator knows it; it outlives
the WebSocket connections its agent opens and closes, and it outlives runs.
The `AgentHub` authenticates connections, sends heartbeats, declares an agent
lost when it stops answering, and knows which run holds which host. Everything
that belongs to one run (its stages, results, barriers and key/values) lives
in that run's fleet (coordinator/fleet.py), which claims its hosts here: a
link hands its messages to whoever holds its host, so nothing here grows per run.

Whoever wants to remember agents (`phalanx serve` keeps them in its store)
gives the hub an `on_seen` observer; the hub itself stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from phalanx.coordinator.auth import TokenVerifier, bearer
from phalanx.coordinator.clock import ClockOffset
from phalanx.coordinator.links import HELLO_TIMEOUT, Connection, WebSocketLink, receive
from phalanx.coordinator.vouching import Vouching
from phalanx.store.failures import Throttle, describe
from phalanx.wire.messages import (
    PROTOCOL_VERSION,
    Ack,
    AgentMessage,
    Hello,
    PeerHeld,
    Ping,
    Pong,
    ScopeEnd,
    Shutdown,
    StageCancel,
    StageResult,
    encode,
    parse_agent_message,
)

log = logging.getLogger("phalanx.coordinator")

# How long an ack waits for a stage.start to ride on before it goes alone:
# the agent keeps the result that long more, and is woken once a stage, not twice.
ACK_DELAY = 0.5
CLOSE_REFUSED = 4001  # application close code: the agent must not retry


@dataclass(frozen=True)
class Sighting:
    """An agent as the hub saw it just now: what `on_seen` is given."""

    name: str
    version: str  # the phalanx version it runs ("" from an agent that did not say)
    labels: Mapping[str, str]
    address: str | None  # where its connection comes from
    connected: bool


OnSeen = Callable[[Sighting], None]


class HostClaimed(Exception):
    """A run asked for a host that another live run holds."""


class Holder(Protocol):
    """The run that holds a host: it gets the host's run messages."""

    run_id: str

    def on_message(self, host: str, message: AgentMessage) -> Awaitable[None] | None:
        """A message about a stage; a stage.result's record must be safe
        when this returns, or when the awaitable it returns is done: the link
        acks it right after."""
        ...

    def on_attach(self, host: str) -> None:
        """The host's agent (re)connected."""
        ...

    def known(self, host: str) -> frozenset[str]:
        """The stage ids and scopes this run has sent the host (what a
        reconnecting agent may go on running for it)."""
        ...

    def on_lost(self, host: str, reason: str) -> None: ...


class AgentLink:
    def __init__(self, hub: AgentHub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.connection: Connection | None = None
        self.connected = asyncio.Event()
        self.last_seen = 0.0
        self.disconnected_at: float | None = None
        self.lost: str | None = None
        self.forgotten = False  # dropped from the hub; its late messages go nowhere
        self.address: str | None = None  # where its live connection comes from
        self.version = ""  # from its hello
        self.labels: dict[str, str] = {}  # from its hello
        self.reported = 0.0  # when `on_seen` last heard of it (loop time)
        # The token its live connection was admitted with (in memory only):
        # whoever issued it may check that it still stands (a revoke).
        self.token: str | None = None
        # Its clock against ours, from its pongs (operation histories are
        # put on the coordinator's clock with it).
        self.clock = ClockOffset()
        self.ping_seq = 0
        self.acks: list[str] = []  # results recorded, not acked yet (see `ack`)
        self._ack_timer: asyncio.TimerHandle | None = None

    def send(self, message: object) -> None:
        """Send on the live connection; without one the message is dropped
        (what must not be lost is resent on the next attach)."""
        if self.connection is not None:
            self.connection.send(encode(message))  # type: ignore[arg-type]

    def ack(self, stage_id: str) -> None:
        """Ack a result: with the next stage.start (`take_acks`), or alone
        after ACK_DELAY if none comes."""
        self.acks.append(stage_id)
        if self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY, self.flush_acks)

    def take_acks(self) -> list[str]:
        """The acks not sent yet, for a stage.start to carry."""
        acks, self.acks = self.acks, []
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        return acks

    def flush_acks(self) -> None:
        for ref in self.take_acks():
            self.send(Ack(ref=ref))

    # --- connection life -------------------------------------------------------------

    def attach(self, connection: Connection) -> None:
        self.connection = connection
        self.lost = None
        self.disconnected_at = None
        self.last_seen = asyncio.get_running_loop().time()
        self.connected.set()
        self.ping()  # a first clock sample now, not a heartbeat later
        self._report()
        if (holder := self.hub.holder(self.name)) is not None:
            holder.on_attach(self.name)

    def ping(self) -> None:
        """A heartbeat, and a sample of the agent's clock."""
        if self.connection is None:
            return
        self.ping_seq += 1
        self.clock.pinged(self.ping_seq, time.time())
        self.send(Ping(seq=self.ping_seq))

    def detach(self, connection: Connection) -> None:
        if self.connection is connection:
            self.connection = None
            self.connected.clear()
            self.disconnected_at = asyncio.get_running_loop().time()
            self._report()

    def _report(self) -> None:
        if self.hub.on_seen is None:
            return
        self.reported = asyncio.get_running_loop().time()
        sighting = Sighting(
            self.name, self.version, dict(self.labels), self.address, self.connection is not None
        )
        try:
            self.hub.on_seen(sighting)
        except Exception:  # an observer's fault must not cost the agent its connection
            log.exception("recording that agent %s was seen failed", self.name)

    def lose(self, reason: str) -> None:
        self.lost = reason
        if (holder := self.hub.holder(self.name)) is not None:
            holder.on_lost(self.name, reason)

    # --- messages from the agent ------------------------------------------------------

    def handle(self, message: AgentMessage) -> Awaitable[None] | None:
        """Hand `message` to the run holding this host. None when it is
        dealt with; an awaitable when its result's record is still being
        made safe (the ack goes when that is done)."""
        if self.forgotten:
            return None
        self.last_seen = asyncio.get_running_loop().time()
        if self.last_seen - self.reported >= self.hub.seen_interval:
            self._report()  # a sign of life, told now and then, not at every pong
        if isinstance(message, Pong):
            self.clock.ponged(message.seq, time.time(), message.clock)
            return None
        if isinstance(message, Ack | Hello):
            return None
        if isinstance(message, PeerHeld):
            self.hub.vouching.answered(self.name, message)
            return None
        holder = self.hub.holder(self.name)
        written = holder.on_message(self.name, message) if holder is not None else None
        if not isinstance(message, StageResult):
            return None
        if written is not None:
            return self._ack_after(written, message.stage_id)
        # Acked even when no run holds the stage (a resend after its run
        # ended): the agent's outbox must empty, and nobody wants it.
        self.ack(message.stage_id)
        return None

    async def _ack_after(self, written: Awaitable[None], stage_id: str) -> None:
        try:
            await written
        except Exception as exc:
            # Not acked now. The run has the result all the same (the fleet
            # applies it); the agent keeps it until a later connection, whose
            # resend is acked without being written again.
            if (why := describe(exc)) is None:
                log.exception("recording a result of agent %s failed", self.name)
            elif (line := self.hub.store_failures.line(why, why)) is not None:
                log.error("recording the results of agents failed: %s", line)
            return
        self.ack(stage_id)


class AgentHub:
    """Every agent link of a coordinator, and which run holds which host."""

    def __init__(
        self,
        tokens: TokenVerifier,
        *,
        heartbeat_timeout: float = 10.0,
        on_seen: OnSeen | None = None,
        seen_interval: float = 60.0,
    ) -> None:
        """`on_seen` hears of each agent when it connects, when it
        disconnects, and while it stays connected at most every
        `seen_interval` seconds."""
        self.tokens = tokens
        self.heartbeat_timeout = heartbeat_timeout
        self.on_seen = on_seen
        self.seen_interval = seen_interval
        self.links: dict[str, AgentLink] = {}
        self.holders: dict[str, Holder] = {}  # host -> the live run that holds it
        self._watchdog: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        # A store that cannot be written fails every result alike: a line a minute.
        self.store_failures = Throttle(time.monotonic)
        # Whether another watcher judges this host's loss: a VM whose
        # hypervisor has gone quiet is lost with it, under the hypervisor's
        # name, within the hypervisor's own heartbeat timeout.
        self.judged_elsewhere: Callable[[str], bool] = lambda host: False
        self.vouching = Vouching()

    def link(self, name: str) -> AgentLink:
        if name not in self.links:
            self.links[name] = AgentLink(self, name)
        return self.links[name]

    # --- who holds a connection on an agent's host (coordinator/vouching.py) ----------

    def agents_at(self, address: str) -> list[str]:
        """The agents whose live connection comes from `address`."""
        return [
            name
            for name, link in self.links.items()
            if link.connection is not None and link.address == address
        ]

    async def vouch(
        self, agents: Iterable[str], client_port: int, server_port: int
    ) -> list[tuple[str, str]]:
        """The run capabilities the connected `agents` find at the client end
        of a connection from `client_port` to `server_port` on their hosts."""
        links = [
            link
            for name in agents
            if (link := self.links.get(name)) is not None and link.connection is not None
        ]
        return await self.vouching.ask(links, client_port, server_port)

    # --- which run holds which host ----------------------------------------------------

    def holder(self, host: str) -> Holder | None:
        return self.holders.get(host)

    def claim(self, holder: Holder, hosts: Iterable[str]) -> None:
        """Give `hosts` to `holder`, all or none."""
        hosts = list(hosts)
        for host in hosts:
            other = self.holders.get(host)
            if other is not None and other is not holder:
                raise HostClaimed(f"host {host!r} is held by run {other.run_id!r}")
        for host in hosts:
            self.holders[host] = holder

    def release(self, holder: Holder) -> None:
        for host in [h for h, held in self.holders.items() if held is holder]:
            del self.holders[host]

    def shutdown(self, hosts: Iterable[str]) -> None:
        """Tell these hosts' agents to end their stages' processes and exit."""
        for host in hosts:
            if (link := self.links.get(host)) is not None:
                link.send(Shutdown())

    def replace(self, hosts: Iterable[str]) -> None:
        """These hosts' agents are being replaced by new ones under the same
        names and tokens (their VMs were restored to a snapshot taken before
        their agents started: `revert: case`). Their connections, which no
        agent holds any more, are dropped now without calling them lost, so
        that the newcomers are not refused as second agents. One that does
        not come back within the heartbeat timeout is lost, as any agent
        that disconnects."""
        for host in hosts:
            link = self.links.get(host)
            if link is not None and link.connection is not None:
                connection = link.connection
                link.detach(connection)
                self._close_later(connection, 1000, "replaced: its VM was restored")

    def drop(self, hosts: Iterable[str], reason: str) -> None:
        """These hosts' agents are lost for `reason` (their hypervisor is
        gone): their stages end in error, and their connections are closed
        with a refusal, so the agents exit instead of reconnecting."""
        for host in hosts:
            if (link := self.links.get(host)) is None:
                continue
            if link.connection is not None:
                connection = link.connection
                link.detach(connection)
                self._close_later(connection, CLOSE_REFUSED, reason[:120])
            link.lose(reason)

    def forget(self, hosts: Iterable[str]) -> None:
        """Drop these hosts' links (their agents are gone for good, e.g. a run
        that brought them up has taken them down), closing what is left open."""
        for host in hosts:
            link = self.links.pop(host, None)
            if link is None:
                continue
            link.forgotten = True
            if link.connection is not None:
                connection = link.connection
                link.detach(connection)
                self._close_later(connection, 1000, "forgotten")

    # --- lifetime ------------------------------------------------------------------

    def start(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        self.forget(list(self.links))
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=5.0)

    def _close_later(self, connection: Connection, code: int, reason: str) -> None:
        self._later(connection.close(code, reason))

    def _later(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
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

    @property
    def ping_interval(self) -> float:
        return max(self.heartbeat_timeout / 4, 0.05)

    def _alive(self, link: AgentLink) -> bool:
        """Whether the link's connection answered within the last heartbeat
        interval (with half an interval's slack for the pong's way back)."""
        idle = asyncio.get_running_loop().time() - link.last_seen
        return idle <= self.ping_interval * 1.5

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.ping_interval
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for link in list(self.links.values()):
                if link.connection is not None:
                    if now - link.last_seen > self.heartbeat_timeout:
                        if self.judged_elsewhere(link.name):
                            continue
                        reason = f"no heartbeat for {self.heartbeat_timeout:g}s"
                        log.warning("agent %s lost: %s", link.name, reason)
                        connection = link.connection
                        link.detach(connection)
                        link.lose(reason)
                        self._close_later(connection, 1011, "heartbeat timeout")
                    else:
                        link.ping()
                elif (
                    link.lost is None
                    and link.disconnected_at is not None
                    and now - link.disconnected_at > self.heartbeat_timeout
                    and not self.judged_elsewhere(link.name)
                ):
                    reason = f"disconnected for {self.heartbeat_timeout:g}s"
                    log.warning("agent %s lost: %s", link.name, reason)
                    link.lose(reason)

    def _end_over(self, link: AgentLink, hello: Hello) -> None:
        """Tell a (re)connected agent to end what it runs for runs that are
        over: a coordinator killed mid-run and started again has no run of
        the old ids, so their stages would go on beside the next run's."""
        holder = self.holder(link.name)
        known = holder.known(link.name) if holder is not None else frozenset()
        over = [s for s in hello.running if s not in known]
        # The agent names its running stages' scopes among the ones it holds.
        scopes = {s for s in hello.scopes if s not in known}
        if not over and not scopes:
            return
        log.warning(
            "agent %s still ran %d stage(s) of runs that are over; ending them",
            link.name,
            len(over) or len(scopes),
        )
        for stage_id in over:
            link.send(StageCancel(stage_id=stage_id))
        for scope in sorted(scopes):
            link.send(ScopeEnd(scope=scope))

    # --- the WebSocket endpoint -------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        token = bearer(websocket.headers.get("authorization"))
        found = self.tokens.host_for(token)
        host = await found if inspect.isawaitable(found) else found
        if host is None:
            await websocket.close(code=1008)  # before accept: the handshake gets HTTP 403
            return
        await websocket.accept()
        connection = WebSocketLink(websocket)
        try:
            hello = await asyncio.wait_for(receive(websocket), HELLO_TIMEOUT)
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
            why = _refusal(exc)
            log.warning("refusing an agent connection: %s", why)
            await connection.close(CLOSE_REFUSED, why[:120])
            return
        link = self.link(host)
        if link.connection is not None and self._alive(link):
            # Two agents under one name would take each other's stages; the
            # newcomer is told why and does not retry. A connection that has
            # missed its heartbeat is a dead socket its own agent is
            # replacing, and gives way.
            reason = f"an agent named {host} is already connected"
            log.warning("refusing an agent connection: %s", reason)
            await connection.close(CLOSE_REFUSED, reason[:120])
            return
        if link.connection is not None:
            old = link.connection
            link.detach(old)
            self._close_later(old, 1000, "replaced by a newer connection")
        link.address = websocket.client.host if websocket.client is not None else None
        link.version = first.agent_version
        link.labels = dict(first.labels)
        link.token = token
        link.attach(connection)
        self._end_over(link, first)
        try:
            while True:
                raw = await receive(websocket)
                try:
                    message = parse_agent_message(raw)
                except ValidationError as exc:
                    log.warning("agent %s sent a malformed message: %s", host, exc.errors()[:1])
                    continue
                if (written := link.handle(message)) is not None:
                    # The ack waits for the result's record to be safe; the
                    # agent's next messages (pongs among them) do not.
                    self._later(written)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            link.detach(connection)
            connection.writer.cancel()


def _refusal(exc: Exception) -> str:
    """One line on why a hello was refused. A hostile hello can fail
    validation thousands of times over (a label each): the first failure and
    a count, never the whole list, go into the log and the close reason."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "a malformed hello"
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
