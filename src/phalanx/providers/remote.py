"""A provider whose VMs a hypervisor runs (`phalanx hypervisor`, or the
embedded one of `phalanx run`): the run's side of the assignment.

The hypervisor holds any number of clusters at once, each under a key the
coordinator gives it; this provider speaks for one of them, so
`coordinator.runs` drives it like any other provider. Whether the
hypervisor is in this process or across a WebSocket is the `ClusterHost`'s
business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from phalanx.model import Cluster, Host
from phalanx.providers.base import AgentSpec, FaultError, NetworkFaults, ProvisionError


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

    async def down_cluster(self, key: str, lost: Collection[str]) -> None: ...

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
    """`NetworkFaults` of a cluster on a hypervisor elsewhere: each call is
    one request (`cluster.fault`); the hypervisor's reason for a failure is
    the FaultError's."""

    def __init__(self, hypervisor: FaultingHost, key: str) -> None:
        self.hypervisor = hypervisor
        self.key = key

    async def _ask(self, fault: Fault) -> None:
        try:
            await self.hypervisor.fault_cluster(self.key, fault)
        except ProvisionError as exc:
            raise FaultError(str(exc)) from None

    async def partition(self, groups: Sequence[Sequence[str]]) -> None:
        await self._ask(Fault("partition", groups=tuple(tuple(g) for g in groups)))

    async def isolate(self, host: str) -> None:
        await self._ask(Fault("isolate", host=host))

    async def slow(self, host: str, delay: float) -> None:
        await self._ask(Fault("slow", host=host, delay=delay))

    async def heal(self) -> None:
        await self._ask(Fault("heal"))


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
        kept: Kept | None = None,
        keep: bool = False,
        on_keep: Callable[[HypervisorProvider], Awaitable[None]] | None = None,
        on_close: Callable[[HypervisorProvider], Awaitable[None]] | None = None,
    ) -> None:
        self.hypervisor = hypervisor
        self.cluster = cluster
        self.run_id = run_id
        self.key = key
        self.folder = folder
        self.opened: Opened | None = kept.opened if kept else None
        self.reused = kept is not None
        self.keep = keep or kept is not None
        self.listen_address: str | None = kept.opened.listen_address if kept else None
        # host: the token its agent was booted with (by an earlier run, if kept)
        self.tokens: dict[str, str] = dict(kept.tokens) if kept else {}
        self._open_called = kept is not None
        self._on_keep = on_keep
        self._on_close = on_close

    @property
    def keeps(self) -> Collection[str]:
        """The tokens whose agents outlive this run (a kept cluster's):
        the run must neither revoke them nor shut those agents down."""
        return set(self.tokens.values()) if self.keep else set()

    async def open(self) -> None:
        if not self.reused:
            self._open_called = True
            self.opened = await self.hypervisor.open_cluster(
                self.key, self.cluster, self.run_id, self.folder
            )
            self.listen_address = self.opened.listen_address
        # Faults between the VMs: made by a hypervisor in this process, or
        # asked of one across the wire when its VMs are on a bridge there.
        if (faults_of := getattr(self.hypervisor, "faults", None)) is not None:
            self.faults = faults_of(self.key)
        elif (
            self.opened is not None
            and self.opened.faults
            and isinstance(self.hypervisor, FaultingHost)
        ):
            self.faults = WireFaults(self.hypervisor, self.key)

    def addresses(self, hosts: list[Host]) -> dict[str, str]:
        known = self.opened.addresses if self.opened is not None else {}
        return {h.name: known.get(h.name) or h.ip or h.name for h in hosts}

    def diskmounts(self, host: Host) -> str:
        return self.opened.diskmounts.get(host.name, "") if self.opened is not None else ""

    async def up(self, specs: list[AgentSpec]) -> None:
        if self.reused:
            return  # their agents are connected since the run that booted them
        self.tokens = {s.host.name: s.token for s in specs}
        await self.hypervisor.up_cluster(self.key, specs)

    async def down(self, lost: Collection[str] = ()) -> None:
        if self.keep and not lost:
            if self._on_keep is not None:
                await self._on_keep(self)
            return
        self.keep = False  # a VM lost: the cluster is not worth keeping
        await self.hypervisor.down_cluster(self.key, lost)

    # `revert: case` (coordinator.runs.Reverting), done by the hypervisor.
    async def revert(self) -> None:
        await self.hypervisor.revert_cluster(self.key)

    async def resume(self) -> None:
        await self.hypervisor.resume_cluster(self.key)

    # `Diagnosing`: what a hypervisor in this process sees of its VMs; one
    # across the wire keeps its consoles to itself (and in its own folder).
    def connected(self, host: str) -> None:
        if (connected := getattr(self.hypervisor, "connected", None)) is not None:
            connected(self.key, host)

    def explain(self, host: str) -> str | None:
        explain = getattr(self.hypervisor, "explain", None)
        return explain(self.key, host) if explain is not None else None

    async def close(self) -> None:
        try:
            if self._open_called and not self.keep:
                self._open_called = False
                await self.hypervisor.close_cluster(self.key)
        finally:
            if self._on_close is not None and not self.keep:
                await self._on_close(self)
