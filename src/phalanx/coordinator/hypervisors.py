"""The coordinator's hypervisors: the daemons connected to `/hypervisor`
(a `DaemonHub`: admitted, pinged and lost as agents are; their capacity),
the embedded one, which cluster is on which, and the clusters left up for
the next run (`keep: true`).

A run of a qemu cluster asks `provider()`: with hypervisors connected, the
cluster goes to the one with the most free RAM that has enough for its VMs
(none has: the run is `error` saying so); with none, to the embedded one in
this process. A hypervisor that disconnects and does not come back, or
misses its heartbeats, for the heartbeat timeout is lost: its pending
requests fail, and the agents of its clusters are dropped with a reason
naming it, so their runs end in `error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.daemons import DaemonHub, DaemonLink, Unanswered, Verifier, new_request_id
from phalanx.coordinator.sharedlisteners import SharedListeners
from phalanx.model import Cluster
from phalanx.providers.base import AgentSpec, ProvisionError
from phalanx.providers.remote import ClusterHost, Fault, HypervisorProvider, Kept, Opened
from phalanx.wire.messages import MessagePart

P = TypeVar("P", bound=MessagePart)

if TYPE_CHECKING:
    from phalanx.hypervisor.core import Hypervisor
    from phalanx.hypervisor.moving import Departure
    from phalanx.providers.machine import Receiving
    from phalanx.wire.hypervisor import HyperHello, Reply

log = logging.getLogger("phalanx.coordinator")

EMBEDDED = "embedded"
HISTORY = 20  # runs remembered per hypervisor, for the pages' colours
REQUEST_TIMEOUT = 1800.0  # booting a cluster under TCG on a busy machine
MIGRATION_MARGIN = 30.0  # past a migration's own timeout, for a hypervisor's answer
PREPARE_TIMEOUT = 600.0  # a destination making (or hashing) its root disk
DEFAULT_VM_RAM_MB = 512  # the qemu provider's, for a host without ram_size


def cluster_ram_mb(cluster: Cluster) -> int:
    from phalanx.providers.qemuargs import ram_megabytes

    return sum(ram_megabytes(h.ram_size) for h in cluster.hosts)


def _host_ram_mb(cluster: Cluster, name: str) -> int:
    from phalanx.providers.qemuargs import ram_megabytes

    return sum(ram_megabytes(h.ram_size) for h in cluster.hosts if h.name == name)


@dataclass
class Assignment:
    cluster: str
    run_id: str
    ram_mb: int
    hosts: tuple[str, ...]
    kept: bool = False


class Remote(DaemonLink):
    """A connected (or lost) hypervisor daemon, as the hub asks things of it."""

    kind = "hypervisor"

    def __init__(
        self,
        name: str,
        cpus: int,
        ram_mb: int,
        kvm: bool,
        accel_reason: str,
        local: bool,
        version: str = "",
        connection: Any = None,
    ) -> None:
        super().__init__(name)
        self.cpus, self.ram_mb, self.kvm = cpus, ram_mb, kvm
        self.accel_reason, self.local, self.version = accel_reason, local, version
        self.connection = connection
        self.seen_at = time.time()  # for the pages
        self.assigned: dict[str, Assignment] = {}
        self.states: dict[str, dict[str, str]] = {}
        self.pids: dict[str, dict[str, int]] = {}

    def ping_message(self, seq: int) -> MessagePart:
        from phalanx.wire.hypervisor import HyperPing

        return HyperPing(seq=seq)

    def heard(self) -> None:
        super().heard()
        self.seen_at = time.time()

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.lost is None

    @property
    def free_mb(self) -> int:
        return self.ram_mb - sum(a.ram_mb for a in self.assigned.values())

    async def call(self, message: Any, timeout: float = REQUEST_TIMEOUT) -> Reply:
        """Its reply to `message`; ProvisionError saying why there is none
        or what went wrong."""
        from phalanx.wire.hypervisor import Reply

        if self.lost is not None:
            raise ProvisionError(f"hypervisor {self.name} is {self.lost}")
        try:
            reply = await self.request(message, Reply, timeout)
        except Unanswered as exc:
            raise ProvisionError(str(exc)) from None
        if reply.error is not None:
            raise ProvisionError(f"hypervisor {self.name}: {reply.error}")
        return reply

    # --- ClusterHost ----------------------------------------------------------------

    async def open_cluster(
        self, key: str, cluster: Cluster, run_id: str, folder: Path | None = None
    ) -> Opened:
        from phalanx.wire.hypervisor import ClusterOpen, cluster_fields

        reply = await self.call(
            ClusterOpen(
                request_id=new_request_id(),
                cluster=key,
                run_id=run_id,
                definition=cluster_fields(cluster),
            )
        )
        return Opened(
            reply.listen_address, dict(reply.addresses), dict(reply.diskmounts), reply.faults
        )

    async def up_cluster(self, key: str, specs: list[AgentSpec]) -> None:
        from phalanx.wire.hypervisor import ClusterUp, VmSpec

        vms = [VmSpec(host=s.host.name, url=s.url, token=s.token) for s in specs]
        await self.call(ClusterUp(request_id=new_request_id(), cluster=key, vms=vms))

    async def down_cluster(self, key: str, lost: Collection[str]) -> object:
        """The VMs' files the daemon kept, to go with the run (`vmfiles`)."""
        from phalanx.wire.hypervisor import ClusterDown

        if not self.connected:
            return None
        reply = await self.call(
            ClusterDown(request_id=new_request_id(), cluster=key, lost=list(lost))
        )
        return reply.data.get("files")

    async def close_cluster(self, key: str) -> None:
        from phalanx.wire.hypervisor import ClusterClose

        if self.connected:
            await self.call(ClusterClose(request_id=new_request_id(), cluster=key))

    async def revert_cluster(self, key: str) -> None:
        from phalanx.wire.hypervisor import ClusterRevert

        await self.call(ClusterRevert(request_id=new_request_id(), cluster=key))

    async def resume_cluster(self, key: str) -> None:
        from phalanx.wire.hypervisor import ClusterResume

        await self.call(ClusterResume(request_id=new_request_id(), cluster=key))

    async def fault_cluster(self, key: str, fault: Fault) -> None:
        """A network fault made by the daemon (`remote.WireFaults`)."""
        from phalanx.wire.hypervisor import ClusterFault

        await self.call(
            ClusterFault(
                request_id=new_request_id(),
                cluster=key,
                action=fault.action,  # type: ignore[arg-type]
                groups=[list(group) for group in fault.groups],
                host=fault.host,
                delay=fault.delay,
            )
        )

    # --- remote.MovingHost: live migration, each request one side's part ------------

    async def migrate_vm(self, key: str, host: str, mode: str, timeout: float) -> dict[str, Any]:
        from phalanx.wire.hypervisor import ClusterMigrate
        from phalanx.wire.messages import checked

        message = checked(
            ClusterMigrate,
            {
                "request_id": new_request_id(),
                "cluster": key,
                "host": host,
                "mode": mode,
                "timeout": timeout,
            },
        )
        return dict((await self.call(message, timeout + MIGRATION_MARGIN)).data)

    async def vm_departure(self, key: str, host: str) -> Departure:
        from phalanx.hypervisor.moving import departure_of
        from phalanx.wire.hypervisor import DepartureFields, VmDeparture
        from phalanx.wire.messages import fields_of

        reply = await self.call(
            VmDeparture(request_id=new_request_id(), cluster=key, host=host), PREPARE_TIMEOUT
        )
        return departure_of(fields_of(_checked(DepartureFields, reply.data, self.name)))

    async def vm_incoming(self, key: str, cluster: Cluster, departure: Departure) -> Receiving:
        from phalanx.hypervisor.moving import departure_fields
        from phalanx.providers.machine import Receiving
        from phalanx.wire.hypervisor import (
            DepartureFields,
            ReceivingFields,
            VmIncoming,
            cluster_fields,
        )
        from phalanx.wire.messages import checked

        message = VmIncoming(
            request_id=new_request_id(),
            cluster=key,
            definition=cluster_fields(cluster),
            departure=checked(DepartureFields, departure_fields(departure)),
        )
        reply = await self.call(message, PREPARE_TIMEOUT)
        fields = _checked(ReceivingFields, reply.data, self.name)
        return Receiving(fields.uri, dict(fields.exports), tuple(fields.whole))

    async def vm_send(
        self, key: str, host: str, to: Receiving, timeout: float, where: str
    ) -> dict[str, Any]:
        from phalanx.wire.hypervisor import ReceivingFields, VmSend

        message = VmSend(
            request_id=new_request_id(),
            cluster=key,
            host=host,
            to=ReceivingFields(uri=to.uri, exports=to.exports, whole=list(to.whole)),
            timeout=timeout,
            where=where,
        )
        return dict((await self.call(message, timeout + MIGRATION_MARGIN)).data)

    async def vm_settle(
        self, key: str, host: str, timeout: float, migration: dict[str, Any] | None
    ) -> None:
        from phalanx.wire.hypervisor import VmSettle

        message = VmSettle(
            request_id=new_request_id(),
            cluster=key,
            host=host,
            timeout=timeout,
            migration=migration,
        )
        await self.call(message, timeout + MIGRATION_MARGIN)


def _checked(model: type[P], data: dict[str, Any], name: str) -> P:
    from phalanx.wire.messages import InvalidMessage, checked

    try:
        return checked(model, data)
    except InvalidMessage as exc:
        raise ProvisionError(f"hypervisor {name} answered with {exc}") from None


@dataclass
class _KeptCluster:
    host: ClusterHost
    key: str
    cluster: Cluster
    kept: Kept
    listening: str | None  # the address held open for its agents


class Hypervisors(DaemonHub[Remote]):
    """Every hypervisor of one coordinator."""

    kind = "hypervisor"

    def __init__(
        self,
        agents: AgentHub,
        tokens: TokenBook,
        *,
        verify: Verifier | None = None,
        heartbeat_timeout: float = 10.0,
        listeners: SharedListeners | None = None,
    ) -> None:
        # verify None: no daemon may connect (`phalanx run`)
        super().__init__(verify, heartbeat_timeout)
        self.agents = agents
        self.tokens = tokens
        self.listeners = listeners
        self.embedded: Hypervisor | None = None
        self.embedded_assigned: dict[str, Assignment] = {}
        self.kept: dict[str, _KeptCluster] = {}  # cluster name: what its last run left up
        # hypervisor name: the ids of its last runs, newest last
        self.history: dict[str, deque[str]] = {}
        agents.judged_elsewhere = self._on_quiet_hypervisor

    @property
    def remotes(self) -> dict[str, Remote]:
        return self.links

    def _on_quiet_hypervisor(self, host: str) -> bool:
        """Whether `host` is a VM of a hypervisor that has gone quiet but is
        not lost yet: when it is, the VM's agent is lost with it, named."""
        quiet_after = max(self.heartbeat_timeout / 2, 0.1)
        for remote in self.remotes.values():
            if remote.lost is not None or not self.quiet(remote, quiet_after):
                continue
            if any(host in a.hosts for a in remote.assigned.values()):
                return True
        return False

    # --- assignment -----------------------------------------------------------------

    def provider(self, cluster: Cluster, run_id: str, root: Path) -> HypervisorProvider:
        """The provider for one run of a qemu `cluster`. Raises ProvisionError
        when hypervisors are connected and none has the RAM for it."""
        keep = _keeps(cluster)
        kept = self.kept.pop(cluster.name, None)
        if kept is not None:
            if self._reusable(kept):
                log.info("cluster %s: reusing the VMs kept up on %s", cluster.name, kept.host.name)
                return self._provider(kept.host, cluster, run_id, kept.key, root, kept, keep)
            self._end_later(kept)
        needed = cluster_ram_mb(cluster)
        connected = [r for r in self.remotes.values() if r.connected]
        key = f"{cluster.name}@{run_id}" if keep else run_id
        if not connected:
            host = self._embedded()
            self.embedded_assigned[key] = Assignment(
                cluster.name, run_id, needed, tuple(h.name for h in cluster.hosts)
            )
            return self._provider(host, cluster, run_id, key, root, None, keep)
        fits = [r for r in connected if r.free_mb >= needed]
        if not fits:
            free = ", ".join(f"{r.name} {r.free_mb} MB free" for r in connected)
            raise ProvisionError(
                f"no hypervisor has {needed} MB free for cluster {cluster.name} ({free})"
            )
        chosen = max(fits, key=lambda r: (r.free_mb, r.name))
        chosen.assigned[key] = Assignment(
            cluster.name, run_id, needed, tuple(h.name for h in cluster.hosts)
        )
        log.info("cluster %s (%d MB) on hypervisor %s", cluster.name, needed, chosen.name)
        return self._provider(chosen, cluster, run_id, key, root, None, keep)

    def _provider(
        self,
        host: ClusterHost,
        cluster: Cluster,
        run_id: str,
        key: str,
        root: Path,
        kept: _KeptCluster | None,
        keep: bool,
    ) -> HypervisorProvider:
        folder = root if host is self.embedded else None
        self.history.setdefault(host.name, deque(maxlen=HISTORY)).append(run_id)

        async def keeping(provider: HypervisorProvider) -> None:
            assert provider.opened is not None
            listening = kept.listening if kept is not None else None
            address = provider.opened.listen_address
            if listening is None and address is not None and self.listeners is not None:
                # The run's own listener closes with it: the agents keep this one.
                await self.listeners.acquire(address)
                listening = address
            self.kept[cluster.name] = _KeptCluster(
                host, key, cluster, Kept(provider.opened, dict(provider.tokens)), listening
            )
            if (assignment := self._assignments(host).get(key)) is not None:
                assignment.kept = True

        async def closed(provider: HypervisorProvider) -> None:
            self._assignments(host).pop(key, None)
            for elsewhere in provider.where.values():  # the hypervisors VMs moved to
                self._assignments(elsewhere).pop(key, None)
            if kept is not None and kept.listening is not None and self.listeners is not None:
                await self.listeners.release(kept.listening)

        def moved(name: str, source: ClusterHost, target: ClusterHost) -> None:
            ram = _host_ram_mb(cluster, name)
            if (was := self._assignments(source).get(key)) is not None:
                was.hosts = tuple(h for h in was.hosts if h != name)
                was.ram_mb -= ram
                if not was.hosts and source is not host:  # a VM came and went on: it holds none
                    self._assignments(source).pop(key, None)
            if isinstance(source, Remote):
                source.states.get(key, {}).pop(name, None)
                source.pids.get(key, {}).pop(name, None)
            now = self._assignments(target).setdefault(key, Assignment(cluster.name, run_id, 0, ()))
            now.hosts, now.ram_mb = (*now.hosts, name), now.ram_mb + ram
            log.info("%s of cluster %s moved to hypervisor %s", name, cluster.name, target.name)

        return HypervisorProvider(
            host,
            cluster,
            run_id,
            key,
            folder=folder,
            home=root,
            kept=kept.kept if kept is not None else None,
            keep=keep,
            on_keep=keeping,
            on_close=closed,
            resolve=lambda to, name: self._destination(to, cluster, name),
            on_move=moved,
        )

    def _destination(self, name: str, cluster: Cluster, host: str) -> ClusterHost:
        """The connected hypervisor `name`, with room for `host`'s VM."""
        remote = self.remotes.get(name)
        if remote is None or not remote.connected:
            known = ", ".join(sorted(r.name for r in self.remotes.values() if r.connected))
            raise ProvisionError(
                f"no hypervisor {name!r} is connected (connected: {known or 'none'})"
            )
        needed = _host_ram_mb(cluster, host)
        if remote.free_mb < needed:
            raise ProvisionError(
                f"hypervisor {name} has {remote.free_mb} MB free; the VM of {host} needs {needed} MB"
            )
        return remote

    def _assignments(self, host: ClusterHost) -> dict[str, Assignment]:
        return host.assigned if isinstance(host, Remote) else self.embedded_assigned

    def _embedded(self) -> Hypervisor:
        if self.embedded is None:
            from phalanx.hypervisor.core import Hypervisor

            self.embedded = Hypervisor(EMBEDDED, Path("."))
        return self.embedded

    def _reusable(self, kept: _KeptCluster) -> bool:
        """Its hypervisor is there, and every VM's agent is connected."""
        if isinstance(kept.host, Remote) and not kept.host.connected:
            return False
        return all(
            (link := self.agents.links.get(h)) is not None and link.connected.is_set()
            for h in kept.kept.tokens
        )

    def _end_later(self, kept: _KeptCluster) -> None:
        """End a kept cluster that the next run cannot use. Its agents and
        tokens go now (the new run's agents take the same names); its VMs
        go in the background."""
        self._release(kept)
        task = asyncio.create_task(self._end_vms(kept))
        task.add_done_callback(lambda _: None)

    def _release(self, kept: _KeptCluster) -> None:
        names = list(kept.kept.tokens)
        self.agents.shutdown(names)
        for token in kept.kept.tokens.values():
            self.tokens.revoke(token)
        self.agents.forget(names)
        self._assignments(kept.host).pop(kept.key, None)

    async def _end_vms(self, kept: _KeptCluster) -> None:
        try:
            with contextlib.suppress(ProvisionError):
                await kept.host.down_cluster(kept.key, ())
            with contextlib.suppress(ProvisionError):
                await kept.host.close_cluster(kept.key)
        finally:
            if kept.listening is not None and self.listeners is not None:
                await self.listeners.release(kept.listening)

    async def _end(self, kept: _KeptCluster) -> None:
        """End a kept cluster: its agents told to exit, their tokens revoked,
        its VMs down."""
        self._release(kept)
        await self._end_vms(kept)

    async def end_kept(self) -> list[str]:
        """End every kept cluster (`phalanx cleanup`'s and shutdown's); their names."""
        kept, self.kept = list(self.kept.values()), {}
        for cluster in kept:
            await self._end(cluster)
        return [c.cluster.name for c in kept]

    # --- lifetime -------------------------------------------------------------------

    async def stop(self) -> None:
        await self.stop_watching()
        await self.end_kept()
        if self.embedded is not None:
            await self.embedded.close_all()
        for remote in self.remotes.values():
            self.disconnect(remote, 1001, "coordinator stopping")
        await self.settle()

    def on_lost(self, remote: Remote, reason: str) -> None:
        """`remote` is gone: its runs end in error naming it."""
        why = f"hypervisor {remote.name} lost: {reason}"
        for assignment in remote.assigned.values():
            self.agents.drop(assignment.hosts, why)
        for name in [n for n, k in self.kept.items() if k.host is remote]:
            kept = self.kept.pop(name)
            for token in kept.kept.tokens.values():
                self.tokens.revoke(token)
            self.agents.forget(kept.kept.tokens)
        remote.assigned.clear()
        for states in remote.states.values():
            for host in states:
                states[host] = "lost"

    # --- DaemonHub: what a hypervisor daemon says -------------------------------------

    def parse(self, raw: str | bytes) -> MessagePart:
        from phalanx.wire.hypervisor import parse_daemon_message

        return parse_daemon_message(raw)

    def check_hello(self, hello: MessagePart, name: str) -> None:
        from phalanx.wire.hypervisor import HYPERVISOR_PROTOCOL, HyperHello

        if not isinstance(hello, HyperHello):
            raise ValueError("the first message must be hyper.hello")
        if hello.version != HYPERVISOR_PROTOCOL:
            raise ValueError(
                f"hypervisor protocol {hello.version} is not supported "
                f"(this coordinator speaks {HYPERVISOR_PROTOCOL})"
            )
        if hello.name != name:
            raise ValueError(f"this token belongs to {name!r}, not {hello.name!r}")

    def admit(self, name: str, hello: HyperHello) -> Remote:
        capacity = hello.capacity
        remote = self.remotes.get(name)
        if remote is None or remote.lost is not None:
            # New, or back after it was lost (its runs ended): a fresh start.
            remote = Remote(name, 0, 0, False, "", hello.local)
        # Else a reconnect within the heartbeat timeout: the same hypervisor
        # (its runs' providers hold it), its clusters carry on.
        remote.cpus, remote.ram_mb, remote.kvm = capacity.cpus, capacity.ram_mb, capacity.kvm
        remote.accel_reason, remote.local = capacity.accel_reason, hello.local
        remote.version = hello.phalanx_version
        return remote

    def welcome(self, remote: Remote, hello: HyperHello) -> None:
        from phalanx.wire.hypervisor import ClusterClose, ClusterDown

        log.info(
            "hypervisor %s connected: %d CPUs, %d MB, %s",
            remote.name,
            remote.cpus,
            remote.ram_mb,
            "KVM" if remote.kvm else "TCG",
        )
        for key in hello.clusters:
            if key not in remote.assigned:  # a run that ended while it was away
                remote.send(ClusterDown(request_id=new_request_id(), cluster=key, lost=[]))
                remote.send(ClusterClose(request_id=new_request_id(), cluster=key))

    def on_message(self, remote: Remote, message: MessagePart) -> None:
        from phalanx.wire.hypervisor import HyperPong, Reply, VmState

        remote.heard()
        if isinstance(message, Reply):
            remote.reply(message.request_id, message)
        elif isinstance(message, VmState):
            remote.states.setdefault(message.cluster, {})[message.host] = message.state
            if message.pid is not None:
                remote.pids.setdefault(message.cluster, {})[message.host] = message.pid
        elif isinstance(message, HyperPong):
            remote.ponged(message.seq, None)

    # --- what the pages show --------------------------------------------------------

    def views(self) -> list[HypervisorView]:
        views = [
            HypervisorView(
                name=r.name,
                connected=r.connected,
                lost=r.lost,
                last_seen=r.seen_at,
                cpus=r.cpus,
                ram_mb=r.ram_mb,
                free_mb=r.free_mb,
                kvm=r.kvm,
                clusters=[
                    ClusterView(a.cluster, a.run_id, a.ram_mb, a.kept, dict(r.states.get(k, {})))
                    for k, a in sorted(r.assigned.items())
                ],
                runs=list(self.history.get(r.name, ())),
            )
            for r in sorted(self.remotes.values(), key=lambda r: r.name)
        ]
        if self.embedded is not None and (self.embedded_assigned or EMBEDDED in self.history):
            states = self.embedded.states
            views.append(
                HypervisorView(
                    name=EMBEDDED,
                    connected=True,
                    lost=None,
                    last_seen=time.time(),
                    cpus=0,
                    ram_mb=0,
                    free_mb=0,
                    kvm=False,
                    clusters=[
                        ClusterView(a.cluster, a.run_id, a.ram_mb, a.kept, dict(states.get(k, {})))
                        for k, a in sorted(self.embedded_assigned.items())
                    ],
                    runs=list(self.history.get(EMBEDDED, ())),
                )
            )
        return views


@dataclass(frozen=True)
class ClusterView:
    cluster: str
    run_id: str
    ram_mb: int
    kept: bool
    vms: dict[str, str]  # host: booting, running, off, lost


@dataclass(frozen=True)
class HypervisorView:
    name: str
    connected: bool
    lost: str | None
    last_seen: float  # epoch seconds
    cpus: int
    ram_mb: int
    free_mb: int
    kvm: bool
    clusters: list[ClusterView]
    runs: list[str]  # the ids of its last runs, oldest first


def _keeps(cluster: Cluster) -> bool:
    return cluster.keep
