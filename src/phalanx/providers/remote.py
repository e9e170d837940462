"""A provider whose VMs a hypervisor runs (`phalanx hypervisor`, or the
embedded one of `phalanx run`): the run's side of the assignment.

The hypervisor holds any number of clusters at once, each under a key the
coordinator gives it; this provider speaks for one of them, so
`coordinator.runs` drives it like any other provider. Whether the
hypervisor is in this process or across a WebSocket is the `ClusterHost`'s
business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from phalanx.model import Cluster, Host
from phalanx.providers.base import (
    NO_VM_FAULTS,
    AgentSpec,
    Capabilities,
    FaultError,
    Migrated,
    NetworkFaults,
    ProvisionError,
    Refused,
)

log = logging.getLogger("phalanx.coordinator")

if TYPE_CHECKING:
    from phalanx.providers.machine import Receiving


@dataclass(frozen=True)
class Opened:
    """What a hypervisor says of a cluster it has opened."""

    listen_address: str | None  # where the coordinator must also listen; None: loopback
    addresses: dict[str, str] = field(default_factory=dict)
    diskmounts: dict[str, str] = field(default_factory=dict)
    faults: bool = False  # its VMs' network can be broken (they are on a bridge)


@dataclass(frozen=True)
class Kept:
    """A cluster left up by a run (`keep: true`) for the next one."""

    opened: Opened
    tokens: dict[str, str]  # host: the token its agent holds


class ClusterHost(Protocol):
    """A hypervisor, as the coordinator asks things of it. Each call raises
    `ProvisionError` with the reason when it fails."""

    name: str

    async def open_cluster(
        self, key: str, cluster: Cluster, run_id: str, folder: Path | None = None
    ) -> Opened:
        """`folder`: where the VMs' consoles go, if the hypervisor shares
        this machine's files (the embedded one); else its own folder."""
        ...

    async def up_cluster(self, key: str, specs: list[AgentSpec]) -> None: ...

    async def down_cluster(self, key: str, lost: Collection[str]) -> object:
        """What of its VMs a hypervisor elsewhere sends with the run (its
        files, `vmfiles.VmFiles`, not yet trusted); None from one that writes
        into the run's folder itself."""
        ...

    async def close_cluster(self, key: str) -> None: ...

    async def revert_cluster(self, key: str) -> None: ...

    async def resume_cluster(self, key: str) -> None: ...


@dataclass(frozen=True)
class Fault:
    """One `NetworkFaults` call, as it crosses to a hypervisor elsewhere."""

    action: str  # partition | isolate | slow | heal
    groups: tuple[tuple[str, ...], ...] = ()
    host: str = ""
    delay: float = 0.0


async def apply_fault(faults: NetworkFaults, fault: Fault) -> None:
    """Make `fault` with `faults` (the hypervisor's side of WireFaults)."""
    match fault.action:
        case "partition":
            await faults.partition([list(group) for group in fault.groups])
        case "isolate":
            await faults.isolate(fault.host)
        case "slow":
            await faults.slow(fault.host, fault.delay)
        case "heal":
            await faults.heal()
        case _:
            raise FaultError(f"no network fault {fault.action!r}")


@runtime_checkable
class FaultingHost(Protocol):
    """A hypervisor across the wire that makes its clusters' faults."""

    async def fault_cluster(self, key: str, fault: Fault) -> None: ...


class WireFaults:
    """`NetworkFaults` of a cluster a hypervisor runs (elsewhere, or the
    embedded one): each call is a request (`cluster.fault`); the
    hypervisor's reason for a failure is the FaultError's. The cuts are
    asked of the cluster's hypervisor (by MAC, on the bridge its VMs share
    wherever they run); `slow` of the one the VM runs on now (`current`:
    the run's provider knows where each moved); heal of every one the
    cluster is on (`spread`), each undoing the slows of the guests it runs."""

    def __init__(
        self,
        hypervisor: FaultingHost,
        key: str,
        *,
        current: Callable[[str], object] | None = None,
        spread: Callable[[], Sequence[object]] | None = None,
    ) -> None:
        self.hypervisor = hypervisor
        self.key = key
        self.current = current
        self.spread = spread

    async def _ask(self, fault: Fault, of: object | None = None) -> None:
        hypervisor = self.hypervisor if of is None else of
        if not isinstance(hypervisor, FaultingHost):
            name = getattr(hypervisor, "name", "?")
            raise FaultError(f"hypervisor {name} makes no network faults")
        try:
            await hypervisor.fault_cluster(self.key, fault)
        except ProvisionError as exc:
            raise FaultError(str(exc)) from None

    async def partition(self, groups: Sequence[Sequence[str]]) -> None:
        await self._ask(Fault("partition", groups=tuple(tuple(g) for g in groups)))

    async def isolate(self, host: str) -> None:
        await self._ask(Fault("isolate", host=host))

    async def slow(self, host: str, delay: float) -> None:
        where = self.current(host) if self.current is not None else None
        await self._ask(Fault("slow", host=host, delay=delay), where)

    async def heal(self) -> None:
        problems = []
        for where in [self.hypervisor, *(self.spread() if self.spread is not None else ())]:
            try:
                await self._ask(Fault("heal"), where)
            except FaultError as exc:
                problems.append(str(exc))
        if problems:
            raise FaultError("; ".join(problems))


@runtime_checkable
class MovingHost(Protocol):
    """A hypervisor that migrates its VMs (`hypervisor/moving.py`): beside
    themselves, and, a request for each side's part, to another."""

    name: str

    async def migrate_vm(self, key: str, host: str, mode: str, timeout: float) -> dict[str, Any]:
        """To a new QEMU on this hypervisor; the migration's record."""
        ...

    async def vm_departure(self, key: str, host: str) -> Any: ...

    async def vm_incoming(self, key: str, cluster: Cluster, departure: Any) -> Receiving: ...

    async def vm_send(
        self, key: str, host: str, to: Receiving, timeout: float, where: str
    ) -> dict[str, Any]: ...

    async def vm_settle(
        self, key: str, host: str, timeout: float, migration: dict[str, Any] | None
    ) -> None: ...


# The hypervisor named (and with room for a VM of so many MB) for a migration
# to it; raises ProvisionError saying why not.
Resolve = Callable[[str, str], ClusterHost]
# A VM has moved: (host, from, to).
OnMove = Callable[[str, ClusterHost, ClusterHost], None]


class HypervisorProvider:
    """One cluster on one hypervisor, for one run.

    `kept`: the cluster is up already, left by an earlier run (`keep:
    true`): open and up are no-ops, the hosts' agents are connected. With
    `keep`, the run leaves the cluster up unless a host was lost: down tells
    `on_keep` instead (while the run's listener is still open), close does
    nothing. `on_close` hears of a cluster that is not kept, once closed."""

    faults: NetworkFaults | None = None

    def __init__(
        self,
        hypervisor: ClusterHost,
        cluster: Cluster,
        run_id: str,
        key: str,
        *,
        folder: Path | None = None,
        home: Path | None = None,
        kept: Kept | None = None,
        keep: bool = False,
        on_keep: Callable[[HypervisorProvider], Awaitable[None]] | None = None,
        on_close: Callable[[HypervisorProvider], Awaitable[None]] | None = None,
        resolve: Resolve | None = None,
        on_move: OnMove | None = None,
    ) -> None:
        self.hypervisor = hypervisor
        self.cluster = cluster
        self.run_id = run_id
        self.key = key
        self.folder = folder
        self.home = home  # the run's hosts' folder, where VMs' files end up
        self.opened: Opened | None = kept.opened if kept else None
        self.reused = kept is not None
        self.keep = keep or kept is not None
        self.listen_address: str | None = kept.opened.listen_address if kept else None
        # host: the token its agent was booted with (by an earlier run, if kept)
        self.tokens: dict[str, str] = dict(kept.tokens) if kept else {}
        self._open_called = kept is not None
        # `open` or `up` failed: the run ends with that reason, and going down
        # must not add another (a cluster the hypervisor never opened, or one
        # whose hypervisor is gone, has nothing to end).
        self._failed = False
        self._on_keep = on_keep
        self._on_close = on_close
        self._resolve = resolve
        self._on_move = on_move
        # host: the hypervisor running its VM now, for those that moved to another
        self.where: dict[str, ClusterHost] = {}

    @property
    def keeps(self) -> Collection[str]:
        """The tokens whose agents outlive this run (a kept cluster's):
        the run must neither revoke them nor shut those agents down."""
        # A cluster spread over hypervisors by a migration is not kept.
        return set(self.tokens.values()) if self.keep and not self.where else set()

    def capabilities(self) -> Capabilities:
        return Capabilities(
            faults=self.faults if self.faults is not None else Refused(NO_VM_FAULTS),
            migration=self,
            revert=self,
            keep=self,
        )

    async def open(self) -> None:
        if not self.reused:
            self._open_called = True
            try:
                self.opened = await self.hypervisor.open_cluster(
                    self.key, self.cluster, self.run_id, self.folder
                )
            except BaseException:
                self._failed = True
                raise
            self.listen_address = self.opened.listen_address
        # Faults between the VMs: asked of the hypervisor (in this process,
        # or across the wire) when its VMs are on a bridge there; `slow` and
        # heal follow a VM that moved to another.
        faults_of = getattr(self.hypervisor, "faults", None)
        if faults_of is not None:
            takes = faults_of(self.key) is not None
        else:
            takes = self.opened is not None and self.opened.faults
        if takes and isinstance(self.hypervisor, FaultingHost):
            self.faults = WireFaults(
                self.hypervisor,
                self.key,
                current=lambda host: self.where.get(host, self.hypervisor),
                spread=self._elsewhere,
            )
        elif faults_of is not None:
            self.faults = faults_of(self.key)

    def addresses(self, hosts: list[Host]) -> dict[str, str]:
        known = self.opened.addresses if self.opened is not None else {}
        return {h.name: known.get(h.name) or h.ip or h.name for h in hosts}

    def diskmounts(self, host: Host) -> str:
        return self.opened.diskmounts.get(host.name, "") if self.opened is not None else ""

    async def up(self, specs: list[AgentSpec]) -> None:
        if self.reused:
            return  # their agents are connected since the run that booted them
        self.tokens = {s.host.name: s.token for s in specs}
        try:
            await self.hypervisor.up_cluster(self.key, specs)
        except BaseException:
            self._failed = True
            raise

    def _elsewhere(self) -> list[ClusterHost]:
        """The other hypervisors running VMs of this cluster (moved there)."""
        found: list[ClusterHost] = []
        for host in self.where.values():
            if host is not self.hypervisor and all(host is not h for h in found):
                found.append(host)
        return found

    async def _on_each(self, call: Callable[[ClusterHost], Awaitable[None]]) -> None:
        """`call` on every hypervisor the cluster is on, each whatever the
        others did; their failures together (logged, not raised, once the
        cluster has failed to come up)."""
        problems = []
        for host in [self.hypervisor, *self._elsewhere()]:
            try:
                await call(host)
            except ProvisionError as exc:
                problems.append(str(exc))
        if not problems:
            return
        if self._failed:
            log.warning("cluster %s, after it failed to come up: %s", self.key, "; ".join(problems))
            return
        raise ProvisionError("; ".join(problems))

    async def down(self, lost: Collection[str] = ()) -> None:
        if self.where:
            self.keep = False  # spread over hypervisors: not kept (`keep` names one)
        if self.keep and not lost:
            if self._on_keep is not None:
                await self._on_keep(self)
            return
        self.keep = False  # a VM lost: the cluster is not worth keeping
        if not self._open_called:
            return  # never opened: there is no VM to end
        await self._on_each(lambda host: self._down(host, lost))

    async def _down(self, host: ClusterHost, lost: Collection[str]) -> None:
        files = await host.down_cluster(self.key, lost)
        if files is not None and self.home is not None:
            from phalanx.providers import vmfiles

            names = [h.name for h in self.cluster.hosts]
            await asyncio.to_thread(vmfiles.place, files, self.home, names, host.name)

    # `revert: case` (`Reverting`), done by the hypervisor.
    async def revert(self) -> None:
        # Moved back, it is still not the VM its snapshot is of (it came in anew).
        if moved := sorted(self.where):
            raise ProvisionError(
                f"{', '.join(moved)} moved to another hypervisor, where its snapshot is not: "
                "a cluster does not revert after a migration to another hypervisor"
            )
        await self.hypervisor.revert_cluster(self.key)

    async def resume(self) -> None:
        await self.hypervisor.resume_cluster(self.key)

    # `Diagnosing`: what a hypervisor in this process sees of its VMs; one
    # across the wire keeps its consoles to itself (and in its own folder).
    def connected(self, host: str) -> None:
        where = self.where.get(host, self.hypervisor)
        if (connected := getattr(where, "connected", None)) is not None:
            connected(self.key, host)

    def explain(self, host: str) -> str | None:
        explain = getattr(self.where.get(host, self.hypervisor), "explain", None)
        return explain(self.key, host) if explain is not None else None

    # `Migrating`: `phalanx-vm migrate`.
    async def migrate_vm(
        self, host: str, *, to: str | None = None, mode: str = "tcp", timeout: float = 120.0
    ) -> Migrated:
        if host not in {h.name for h in self.cluster.hosts}:
            raise ProvisionError(f"no host {host!r} in cluster {self.cluster.name}")
        current = self.where.get(host, self.hypervisor)
        if not isinstance(current, MovingHost):
            raise ProvisionError(f"hypervisor {current.name} does not migrate VMs")
        began = time.monotonic()
        if to is None or to == current.name:
            record = await current.migrate_vm(self.key, host, mode, timeout)
            return Migrated(host, current.name, time.monotonic() - began, record.get("downtime_ms"))
        if mode != "tcp":
            raise ProvisionError(
                f"to another hypervisor a VM migrates over TCP, not {mode} (a unix socket "
                "serves a migration beside itself)"
            )
        if self._resolve is None:
            raise ProvisionError(
                f"no hypervisor {to!r}: this run has its VMs on {current.name} only"
            )
        target = self._resolve(to, host)
        if not isinstance(target, MovingHost):
            raise ProvisionError(f"hypervisor {target.name} does not migrate VMs")
        departure = await current.vm_departure(self.key, host)
        prepared = time.monotonic()
        receiving = await target.vm_incoming(self.key, self.cluster, departure)
        received = time.monotonic()
        try:
            record = await current.vm_send(self.key, host, receiving, timeout, target.name)
        except BaseException:
            with contextlib.suppress(Exception):
                await target.vm_settle(self.key, host, timeout, None)
            raise
        # The source has ended its QEMU: the VM is the destination's, come what may.
        self.where[host] = target
        if self._on_move is not None:
            self._on_move(host, current, target)
        await target.vm_settle(self.key, host, timeout, record)
        log.info(
            "%s: to %s in %.2fs (departure %.2fs, incoming %.2fs, send %.2fs)",
            host,
            target.name,
            time.monotonic() - began,
            prepared - began,
            received - prepared,
            record.get("seconds", 0.0),
        )
        return Migrated(
            host, target.name, time.monotonic() - began, record.get("downtime_ms"), moved=True
        )

    async def close(self) -> None:
        try:
            if self._open_called and not self.keep:
                self._open_called = False
                await self._on_each(lambda host: host.close_cluster(self.key))
        finally:
            if self._on_close is not None and not self.keep:
                await self._on_close(self)
