"""One hypervisor: the clusters it runs, each by the qemu provider, and the
state of each VM as it changes. The embedded one (`phalanx run`, a service
with no hypervisor connected) and the daemon's are this same class; the
daemon only puts a WebSocket in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phalanx.model import Cluster
from phalanx.providers.base import AgentSpec, FaultError, NetworkFaults, ProvisionError
from phalanx.providers.machine import Machine
from phalanx.providers.qemu import QemuProvider
from phalanx.providers.qemuaccel import choose_accel
from phalanx.providers.remote import Fault, Opened, apply_fault

if TYPE_CHECKING:
    from phalanx.hypervisor.moving import Departure
    from phalanx.providers.machine import Receiving

log = logging.getLogger("phalanx.hypervisor")

OnState = Callable[[str, str, str, "int | None"], None]  # cluster key, host, state, QEMU pid


@dataclass(frozen=True)
class Measured:
    cpus: int
    ram_mb: int
    kvm: bool
    accel_reason: str


def total_ram_mb() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


async def measure() -> Measured:
    """This machine's CPUs, RAM and whether KVM works (a short boot under it,
    as the qemu provider probes; remembered until reboot)."""
    from phalanx.providers.vmimage import ImageError, build_image

    try:
        image = await asyncio.to_thread(build_image)
        accel, reason = await choose_accel(image)
    except ImageError as exc:
        accel, reason = "tcg", f"no VM image: {exc}"
    return Measured(os.cpu_count() or 1, total_ram_mb(), accel == "kvm", reason)


class Hypervisor:
    """Clusters of VMs by key (one per run, or a kept cluster's). `agent_url`:
    the URL the VMs' agents get instead of the coordinator's own (a
    hypervisor on another machine hands its VMs the coordinator URL it was
    given, reached through QEMU's NAT)."""

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        on_state: OnState | None = None,
        agent_url: str | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.on_state = on_state
        self.agent_url = agent_url
        self.clusters: dict[str, QemuProvider] = {}
        self.states: dict[str, dict[str, str]] = {}  # key: host: state
        self._stopping: set[str] = set()
        self._watchers: dict[str, list[asyncio.Task[None]]] = {}
        from phalanx.hypervisor.moving import Moves

        self.moves = Moves(self)

    def _tell(self, key: str, host: str, state: str, pid: int | None = None) -> None:
        self.states.setdefault(key, {})[host] = state
        if self.on_state is not None:
            self.on_state(key, host, state, pid)

    async def open_cluster(
        self, key: str, cluster: Cluster, run_id: str, folder: Path | None = None
    ) -> Opened:
        if key in self.clusters:
            raise ProvisionError(f"hypervisor {self.name}: cluster {key!r} is open already")
        provider = QemuProvider(folder or self.root / run_id / "hosts", run_id, cluster=cluster)
        self.clusters[key] = provider
        try:
            await provider.open()
        except BaseException:
            del self.clusters[key]
            await provider.close()
            raise
        hosts = list(cluster.hosts)
        return Opened(
            provider.listen_address,
            provider.addresses(hosts),
            {h.name: provider.diskmounts(h) for h in hosts},
            faults=provider.faults is not None,
        )

    def _provider(self, key: str) -> QemuProvider:
        if (provider := self.clusters.get(key)) is None:
            raise ProvisionError(f"hypervisor {self.name}: no cluster {key!r}")
        return provider

    async def up_cluster(self, key: str, specs: list[AgentSpec]) -> None:
        provider = self._provider(key)
        if self.agent_url is not None:
            specs = [AgentSpec(s.host, self.agent_url, s.token) for s in specs]
        for spec in specs:
            self._tell(key, spec.host.name, "booting")
        try:
            await provider.up(specs)
        finally:
            for name, vm in provider.vms.items():
                if vm.process.returncode is None and vm.booted_after is not None:
                    self._tell(key, name, "running", vm.process.pid)
                    self.watch(key, name, vm.machine)

    def watch(self, key: str, host: str, machine: Machine) -> None:
        """Tell `lost` if the VM's QEMU ends by itself."""
        watcher = asyncio.create_task(self._watch(key, host, machine))
        self._watchers.setdefault(key, []).append(watcher)

    async def _watch(self, key: str, host: str, machine: Machine) -> None:
        # A migrated VM is the same machine in a new QEMU: watch that one.
        while (process := machine.process) is not None:
            await process.wait()
            if machine.process is process:
                break
        if key not in self._stopping and (key, host) not in self.moves.departed:
            log.warning("hypervisor %s: the VM of %s ended by itself", self.name, host)
            self._tell(key, host, "lost", process.pid if process is not None else None)

    async def down_cluster(self, key: str, lost: Collection[str] = ()) -> None:
        provider = self.clusters.get(key)
        if provider is None and not self.moves.holds(key):
            raise ProvisionError(f"hypervisor {self.name}: no cluster {key!r}")
        self._stopping.add(key)
        names = list(provider.vms) if provider is not None else []
        try:
            if provider is not None:
                await provider.down(lost)
        finally:
            names += await self.moves.down(key, lost)  # the VMs that came in from elsewhere
            for name in names:
                self._tell(key, name, "off")

    def vm_files(self, key: str) -> dict[str, dict[str, str]]:
        """The cluster's VMs' records, consoles and QMP events, as they go
        back to a coordinator elsewhere (`vmfiles`)."""
        from phalanx.providers import vmfiles

        provider = self.clusters.get(key)
        if provider is None or provider.cluster is None:
            return {}
        return vmfiles.gather(provider.root, [h.name for h in provider.cluster.hosts])

    async def close_cluster(self, key: str) -> None:
        provider = self.clusters.pop(key, None)
        if provider is None:
            if self.moves.holds(key):  # only VMs that came in from another hypervisor
                self._stopping.add(key)
                await self.down_cluster(key, list(self.moves.arrivals.get(key, {})))
            for watcher in self._watchers.pop(key, []):
                watcher.cancel()
            self._stopping.discard(key)
            self.states.pop(key, None)
            return
        try:
            if provider.vms:
                self._stopping.add(key)
                await provider.down(list(provider.vms))
        finally:
            await provider.close()
            with contextlib.suppress(Exception):
                await self.moves.down(key, list(self.moves.arrivals.get(key, {})))
            for watcher in self._watchers.pop(key, []):
                watcher.cancel()
            self._stopping.discard(key)
            self.states.pop(key, None)

    async def revert_cluster(self, key: str) -> None:
        await self._provider(key).revert()

    async def resume_cluster(self, key: str) -> None:
        await self._provider(key).resume()

    def faults(self, key: str) -> NetworkFaults | None:
        provider = self.clusters.get(key)
        return provider.faults if provider is not None else None

    async def fault_cluster(self, key: str, fault: Fault) -> None:
        """A network fault between the cluster's VMs, asked across the wire
        (`cluster.fault`); FaultError says why it was not made. `slow` and
        heal also reach the VMs that came here from another hypervisor (in
        their guests); cuts are the cluster's own hypervisor's (by MAC, on
        the bridge they share)."""
        moves = self.moves
        provider = self.clusters.get(key)
        try:
            if fault.action == "slow" and moves.arrived(key, fault.host) is not None:
                return await moves.slow(key, fault.host, fault.delay)
        except ProvisionError as exc:
            raise FaultError(f"cannot slow {fault.host}: {exc}") from None
        if fault.action == "heal" and moves.holds(key) and provider is None:
            return await moves.heal(key)
        if provider is None:
            raise FaultError(f"hypervisor {self.name}: no cluster {key!r}")
        if provider.faults is None:
            raise FaultError(
                f"network faults between VMs need them on a bridge of hypervisor {self.name} "
                "(run it as root, on the coordinator's machine); these VMs share QEMU's "
                "user-mode network"
            )
        faults = provider.faults
        gone = fault.host not in provider.vms and (key, fault.host) in moves.departed
        if fault.action == "slow" and gone:
            raise FaultError(
                f"cannot slow {fault.host}: its VM moved from hypervisor {self.name} to another"
            )
        if fault.action != "heal" or not moves.holds(key):
            return await apply_fault(faults, fault)
        problems = []
        try:
            await apply_fault(faults, fault)
        except FaultError as exc:
            problems.append(str(exc))
        try:
            await moves.heal(key)  # the guests that came here
        except FaultError as exc:
            problems.append(str(exc))
        if problems:
            raise FaultError("; ".join(problems))

    def connected(self, key: str, host: str) -> None:
        if (provider := self.clusters.get(key)) is not None:
            provider.connected(host)

    def explain(self, key: str, host: str) -> str | None:
        provider = self.clusters.get(key)
        return provider.explain(host) if provider is not None else None

    async def close_all(self) -> None:
        """End every cluster (the daemon stopping, or the coordinator gone)."""
        for key in self.keys():
            with contextlib.suppress(Exception):
                await self.close_cluster(key)

    def keys(self) -> list[str]:
        """The clusters this hypervisor holds VMs of: its own, and those
        only some of whose VMs came here from another hypervisor."""
        return sorted({*self.clusters, *(k for k, v in self.moves.arrivals.items() if v)})

    def pids(self, key: str) -> dict[str, int]:
        provider = self.clusters.get(key)
        own = {n: vm.process.pid for n, vm in provider.vms.items()} if provider else {}
        return own | self.moves.pids(key)

    # --- live migration (hypervisor/moving.py) -------------------------------------

    def tell(self, key: str, host: str, state: str, pid: int | None = None) -> None:
        self._tell(key, host, state, pid)

    def forget(self, key: str, host: str) -> None:
        """The VM of `host` is no longer this hypervisor's (it moved away)."""
        self.states.get(key, {}).pop(host, None)

    async def migrate_vm(self, key: str, host: str, mode: str, timeout: float) -> dict[str, Any]:
        return await self.moves.migrate(key, host, mode, timeout)

    async def vm_departure(self, key: str, host: str) -> Departure:
        return await self.moves.departure(key, host)

    async def vm_incoming(self, key: str, cluster: Cluster, departure: Departure) -> Receiving:
        hosts = {h.name: h for h in cluster.hosts}
        if departure.host not in hosts:
            raise ProvisionError(f"no host {departure.host!r} in cluster {cluster.name!r}")
        return await self.moves.incoming(key, hosts[departure.host], departure)

    async def vm_send(
        self, key: str, host: str, to: Receiving, timeout: float, where: str
    ) -> dict[str, Any]:
        return await self.moves.send(key, host, to, timeout, where)

    async def vm_settle(
        self, key: str, host: str, timeout: float, migration: dict[str, Any] | None
    ) -> None:
        """`migration` None: it failed, abandon the VM that waited for it."""
        if migration is None:
            await self.moves.abandon(key, host)
        else:
            await self.moves.settle(key, host, timeout, migration)
