"""The coordinator's end of the agent protocol, for as long as the server runs.

An `AgentLink` is one host's agent as the coordinator knows it; it outlives
the WebSocket connections its agent opens and closes, and it outlives runs.
The `AgentHub` is a `DaemonHub` (daemons.py: admission, heartbeats, loss,
request/reply, the same for hypervisor daemons) that also acks results and
knows which run holds which host. Everything
that belongs to one run (its stages, results, barriers and key/values) lives
in that run's fleet (coordinator/fleet.py), which claims its hosts here: a
link hands its messages to whoever holds its host, so nothing here grows per run.

Whoever wants to remember agents (`phalanx serve` keeps them in its store)
gives the hub an `on_seen` observer; the hub itself stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from phalanx.coordinator.auth import TokenVerifier
from phalanx.coordinator.daemons import CLOSE_REFUSED, DaemonHub, DaemonLink
from phalanx.coordinator.links import Connection
from phalanx.coordinator.vouching import vouch
from phalanx.store.failures import Throttle, describe
from phalanx.wire.messages import (
    PROTOCOL_VERSION,
    Ack,
    AgentMessage,
    Hello,
    LogsResult,
    MessagePart,
    PeerHeld,
    Ping,
    Pong,
    ProcessSignalled,
    ScopeEnd,
    Shutdown,
    StageCancel,
    StageResult,
    parse_agent_message,
)

log = logging.getLogger("phalanx.coordinator")

# How long an ack waits for a stage.start to ride on before it goes alone:
# the agent keeps the result that long more, and is woken once a stage, not twice.
ACK_DELAY = 0.5
__all__ = ["CLOSE_REFUSED", "AgentHub", "AgentLink", "HostClaimed", "Sighting"]


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


class AgentLink(DaemonLink):
    kind = "agent"

    def __init__(self, hub: AgentHub, name: str) -> None:
        super().__init__(name)
        self.hub = hub
        self.connected = asyncio.Event()
        self.forgotten = False  # dropped from the hub; its late messages go nowhere
        self.labels: dict[str, str] = {}  # from its hello
        self.reported = 0.0  # when `on_seen` last heard of it (loop time)
        self.acks: list[str] = []  # results recorded, not acked yet (see `ack`)
        self._ack_timer: asyncio.TimerHandle | None = None

    def ping_message(self, seq: int) -> Ping:
        return Ping(seq=seq)

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
        super().attach(connection)
        self.connected.set()
        self._report()
        if (holder := self.hub.holder(self.name)) is not None:
            holder.on_attach(self.name)

    def detach(self, connection: Connection) -> bool:
        if not super().detach(connection):
            return False
        self.connected.clear()
        self._report()
        return True

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
        super().lose(reason)
        if (holder := self.hub.holder(self.name)) is not None:
            holder.on_lost(self.name, reason)

    # --- messages from the agent ------------------------------------------------------

    def handle(self, message: AgentMessage) -> Awaitable[None] | None:
        """Hand `message` to the run holding this host (a reply, to the
        request waiting for it). None when it is dealt with; an awaitable
        when its result's record is still being made safe (the ack goes
        when that is done)."""
        if self.forgotten:
            return None
        self.heard()
        if self.last_seen - self.reported >= self.hub.seen_interval:
            self._report()  # a sign of life, told now and then, not at every pong
        if isinstance(message, Pong):
            self.ponged(message.seq, message.clock)
            return None
        if isinstance(message, Ack | Hello):
            return None
        if isinstance(message, LogsResult | ProcessSignalled | PeerHeld):
            self.reply(message.request_id, message)
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


class AgentHub(DaemonHub[AgentLink]):
    """Every agent link of a coordinator, and which run holds which host."""

    kind = "agent"

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
        super().__init__(tokens.host_for, heartbeat_timeout)
        self.tokens = tokens
        self.on_seen = on_seen
        self.seen_interval = seen_interval
        self.holders: dict[str, Holder] = {}  # host -> the live run that holds it
        # A store that cannot be written fails every result alike: a line a minute.
        self.store_failures = Throttle(time.monotonic)

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
        return await vouch(links, client_port, server_port)

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
            if (link := self.links.get(host)) is not None:
                self.disconnect(link, 1000, "replaced: its VM was restored")

    def drop(self, hosts: Iterable[str], reason: str) -> None:
        """These hosts' agents are lost for `reason` (their hypervisor is
        gone): their stages end in error, and their connections are closed
        with a refusal, so the agents exit instead of reconnecting."""
        for host in hosts:
            if (link := self.links.get(host)) is not None:
                link.lose(reason)
                self.disconnect(link, CLOSE_REFUSED, reason)

    def forget(self, hosts: Iterable[str]) -> None:
        """Drop these hosts' links (their agents are gone for good, e.g. a run
        that brought them up has taken them down), closing what is left open."""
        for host in hosts:
            link = self.links.pop(host, None)
            if link is not None:
                link.forgotten = True
                self.disconnect(link, 1000, "forgotten")

    # --- lifetime ------------------------------------------------------------------

    async def stop(self) -> None:
        await self.stop_watching()
        self.forget(list(self.links))
        await self.settle()

    async def wait_connected(self, hosts: list[str], timeout: float) -> list[str]:
        """Wait until every host's agent is connected; return those that are not."""
        links = [self.link(h) for h in hosts]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for link in links:
                    await link.connected.wait()
        return [link.name for link in links if not link.connected.is_set()]

    # --- DaemonHub: what an agent says ------------------------------------------------

    def parse(self, raw: str | bytes) -> AgentMessage:
        return parse_agent_message(raw)

    def check_hello(self, hello: MessagePart, name: str) -> None:
        if not isinstance(hello, Hello):
            raise ValueError("the first message must be hello")
        if hello.version != PROTOCOL_VERSION:
            raise ValueError(
                f"protocol version {hello.version} is not supported (this coordinator speaks {PROTOCOL_VERSION})"
            )
        if hello.host != name:
            raise ValueError(f"this token belongs to {name!r}, not {hello.host!r}")

    def admit(self, name: str, hello: Hello) -> AgentLink:
        link = self.link(name)
        link.version = hello.agent_version
        link.labels = dict(hello.labels)
        return link

    def welcome(self, link: AgentLink, hello: Hello) -> None:
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

    def on_message(self, link: AgentLink, message: MessagePart) -> Awaitable[None] | None:
        # The ack of a result waits for its record to be safe; the agent's
        # next messages (pongs among them) do not.
        return link.handle(message)  # type: ignore[arg-type]
