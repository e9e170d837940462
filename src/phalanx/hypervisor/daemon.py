"""`phalanx hypervisor`: the daemon on a VM host.

It connects out to the coordinator's `/hypervisor` endpoint (the agent's
connection loop: bearer token, capped backoff with jitter, a refusal ends
it), says its capacity, answers heartbeats, and runs the clusters it is
assigned with the same `Hypervisor` the coordinator embeds, telling each
VM's state as it changes. When it stops, or is refused, its VMs end.

Where the VMs reach the coordinator: when the coordinator is on this
machine, as the embedded hypervisor's do (a bridge the coordinator also
listens on, as root; else QEMU's user-mode network to its loopback). When it
is elsewhere, every VM is on QEMU's user-mode network and its agent is
given the coordinator URL this daemon was given, reached through QEMU's NAT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from phalanx import __version__
from phalanx.host.connection import keep_connected, refusal
from phalanx.host.endpoint import AGENT_PATH, HYPERVISOR_PATH, websocket_url
from phalanx.providers.base import AgentSpec, FaultError, ProvisionError
from phalanx.providers.machine import Receiving
from phalanx.providers.remote import Fault
from phalanx.wire.hypervisor import (
    HYPERVISOR_PROTOCOL,
    Capacity,
    ClusterClose,
    ClusterDown,
    ClusterFault,
    ClusterMigrate,
    ClusterOpen,
    ClusterResume,
    ClusterRevert,
    ClusterUp,
    HubMessage,
    HyperHello,
    HyperPing,
    HyperPong,
    Reply,
    VmDeparture,
    VmIncoming,
    VmSend,
    VmSettle,
    VmState,
    cluster_of,
    encode,
    parse_hub_message,
)
from phalanx.wire.messages import InvalidMessage, MessageErrors, fields_of

if TYPE_CHECKING:
    from phalanx.hypervisor.core import Hypervisor, Measured

# The VMs' machinery (hypervisor.core, the qemu provider) is imported by the
# daemon when it starts: the service imports this module for its endpoint's
# path only, and should not pay a tenth of a second for the providers.

log = logging.getLogger("phalanx.hypervisor")

TOKEN_ENV = "PHALANX_HYPERVISOR_TOKEN"


def endpoint(url: str) -> str:
    """The hypervisor endpoint of a coordinator URL given with or without it."""
    return websocket_url(url, HYPERVISOR_PATH)


def agent_url(url: str) -> str:
    """The coordinator's agent endpoint beside its hypervisor endpoint."""
    parts = urlsplit(endpoint(url))
    path = parts.path.removesuffix(HYPERVISOR_PATH) + AGENT_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def is_local(url: str) -> bool:
    """Whether the coordinator at `url` is on this machine: its address is a
    loopback one, or one this machine can bind."""
    host = urlsplit(url).hostname or "localhost"
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, address in infos:
        ip = ipaddress.ip_address(address[0])
        if ip.is_loopback:
            return True
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address[0], 0))
            return True
    return False


class HypervisorDaemon:
    def __init__(
        self,
        url: str,
        name: str,
        token: str,
        workdir: Path,
        *,
        ssl_context: ssl.SSLContext | None = None,
        give_up_after: float | None = None,
        measured: Measured | None = None,
    ) -> None:
        self.url = endpoint(url)
        self.name = name
        self.token = token
        self.workdir = workdir
        self.ssl_context = ssl_context
        self.give_up_after = give_up_after
        self.measured = measured
        self.local = is_local(self.url)
        self.queue: asyncio.Queue[str] | None = None
        self.stopping = asyncio.Event()
        from phalanx.hypervisor.core import Hypervisor

        self.hypervisor = Hypervisor(
            name,
            workdir,
            on_state=self._state,
            agent_url=None if self.local else agent_url(url),
        )
        self.requests: set[asyncio.Task[None]] = set()
        self.ws: ClientConnection | None = None

    def stop(self) -> None:
        self.stopping.set()
        if self.ws is not None:
            task = asyncio.ensure_future(self.ws.close())
            self.requests.add(task)

    async def run(self) -> int:
        from phalanx.hypervisor.core import measure
        from phalanx.providers.qemu import NETWORK_ENV

        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.local:
            # The VMs reach a coordinator elsewhere through QEMU's NAT: a
            # bridge on this machine would lead nowhere it listens.
            os.environ[NETWORK_ENV] = "user"
        if self.measured is None:
            self.measured = await measure()
        log.warning(
            "hypervisor %s: %d CPUs, %d MB, %s (%s); coordinator %s (%s)",
            self.name,
            self.measured.cpus,
            self.measured.ram_mb,
            "KVM" if self.measured.kvm else "TCG",
            self.measured.accel_reason,
            self.url,
            "this machine" if self.local else "elsewhere: the VMs reach it by NAT",
        )
        try:
            return await keep_connected(
                self.url,
                self.token,
                self._session,
                self.stopping,
                log,
                who="hypervisor",
                give_up_after=self.give_up_after,
                ssl_context=self.ssl_context,
            )
        finally:
            for task in self.requests:
                task.cancel()
            await asyncio.shield(self.hypervisor.close_all())

    def send(self, message: HyperHello | Reply | VmState | HyperPong) -> None:
        if self.queue is not None:
            self.queue.put_nowait(encode(message))

    def _state(self, key: str, host: str, state: str, pid: int | None) -> None:
        self.send(VmState(cluster=key, host=host, state=state, pid=pid))  # type: ignore[arg-type]

    async def _session(self, ws: ClientConnection) -> str | None:
        assert self.measured is not None
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.queue = queue
        self.ws = ws
        m = self.measured
        self.send(
            HyperHello(
                version=HYPERVISOR_PROTOCOL,
                name=self.name,
                phalanx_version=__version__,
                capacity=Capacity(
                    cpus=m.cpus, ram_mb=m.ram_mb, kvm=m.kvm, accel_reason=m.accel_reason
                ),
                local=self.local,
                clusters=self.hypervisor.keys(),
            )
        )
        if not self.local:
            # A VM migrating here from another machine's hypervisor comes to
            # the address this one reaches the coordinator from.
            with contextlib.suppress(Exception):
                self.hypervisor.moves.address = str(ws.local_address[0])
        writer = asyncio.create_task(_write(ws, queue))
        try:
            async for raw in ws:
                try:
                    message = parse_hub_message(raw)
                except MessageErrors as exc:
                    log.warning("ignoring a malformed message: %s", str(exc)[:200])
                    continue
                if isinstance(message, HyperPing):
                    self.send(HyperPong(seq=message.seq))
                    continue
                task = asyncio.create_task(self._answer(message))
                self.requests.add(task)
                task.add_done_callback(self.requests.discard)
        except ConnectionClosed as exc:
            return refusal(exc)
        finally:
            self.queue = None
            self.ws = None
            writer.cancel()
        return None

    async def _answer(self, message: HubMessage) -> None:
        assert not isinstance(message, HyperPing)
        hv = self.hypervisor
        reply = Reply(request_id=message.request_id)
        try:
            if isinstance(message, ClusterOpen):
                try:
                    cluster = cluster_of(message.definition)
                except InvalidMessage as exc:
                    raise ProvisionError(f"not a cluster: {exc}") from exc
                opened = await hv.open_cluster(message.cluster, cluster, message.run_id)
                reply = Reply(
                    request_id=message.request_id,
                    listen_address=opened.listen_address,
                    addresses=opened.addresses,
                    diskmounts=opened.diskmounts,
                    faults=opened.faults,
                )
            elif isinstance(message, ClusterUp):
                provider = hv.clusters.get(message.cluster)
                known = provider.cluster if provider is not None else None
                hosts = {h.name: h for h in known.hosts} if known is not None else {}
                unknown = [v.host for v in message.vms if v.host not in hosts]
                if unknown:
                    raise ProvisionError(f"no host {unknown[0]!r} in cluster {message.cluster!r}")
                specs = [AgentSpec(hosts[v.host], v.url, v.token) for v in message.vms]
                await hv.up_cluster(message.cluster, specs)
            elif isinstance(message, ClusterDown):
                await hv.down_cluster(message.cluster, message.lost)
                files = await asyncio.to_thread(hv.vm_files, message.cluster)
                reply = Reply(request_id=message.request_id, data={"files": files})
            elif isinstance(message, ClusterClose):
                await hv.close_cluster(message.cluster)
            elif isinstance(message, ClusterRevert):
                await hv.revert_cluster(message.cluster)
            elif isinstance(message, ClusterResume):
                await hv.resume_cluster(message.cluster)
            elif isinstance(message, ClusterFault):
                await hv.fault_cluster(message.cluster, fault_of(message))
            elif isinstance(message, ClusterMigrate | VmDeparture | VmIncoming | VmSend | VmSettle):
                reply = Reply(request_id=message.request_id, data=await _migration(hv, message))
        except (ProvisionError, FaultError) as exc:
            reply = Reply(request_id=message.request_id, error=str(exc))
        except Exception as exc:  # the coordinator must hear of it, not wait for ever
            log.exception("hypervisor %s: %s failed", self.name, message.type)
            reply = Reply(request_id=message.request_id, error=f"{type(exc).__name__}: {exc}")
        self.send(reply)


def fault_of(message: ClusterFault) -> Fault:
    return Fault(
        message.action,
        groups=tuple(tuple(group) for group in message.groups),
        host=message.host,
        delay=message.delay,
    )


async def _migration(
    hv: Hypervisor, message: ClusterMigrate | VmDeparture | VmIncoming | VmSend | VmSettle
) -> dict[str, Any]:
    """One migration request's part here; the reply's data."""
    from phalanx.hypervisor import moving

    if isinstance(message, ClusterMigrate):
        return await hv.migrate_vm(message.cluster, message.host, message.mode, message.timeout)
    if isinstance(message, VmDeparture):
        return moving.departure_fields(await hv.vm_departure(message.cluster, message.host))
    if isinstance(message, VmIncoming):
        try:
            cluster = cluster_of(message.definition)
        except InvalidMessage as exc:
            raise ProvisionError(f"not a cluster: {exc}") from exc
        departure = moving.departure_of(fields_of(message.departure))
        receiving = await hv.vm_incoming(message.cluster, cluster, departure)
        return {"uri": receiving.uri, "exports": receiving.exports, "whole": list(receiving.whole)}
    if isinstance(message, VmSend):
        to = Receiving(message.to.uri, dict(message.to.exports), tuple(message.to.whole))
        return await hv.vm_send(message.cluster, message.host, to, message.timeout, message.where)
    await hv.vm_settle(message.cluster, message.host, message.timeout, message.migration)
    return {}


async def _write(ws: ClientConnection, queue: asyncio.Queue[str]) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.send(await queue.get())
