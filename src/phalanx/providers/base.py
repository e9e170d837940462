"""What a provider does: bring a cluster's hosts up with a connected agent
each, say how hosts reach one another, and take everything down again.

A provider's life, as `coordinator.runs` drives it:

    await provider.open()        # networks, bridges; checks (root? ssh keys?)
    provider.listen_address      # where the coordinator must listen for them
    await provider.up(specs)     # one agent per host, connecting back
    ...the run...
    await provider.down(lost)    # every agent and what its stages left
    await provider.close()       # networks, whatever `open` made

`close` runs whenever `open` was called, however the run ended.

Besides bringing hosts up and down, a provider says what else it can do
for a run (`capabilities`, asked after `open`): break its hosts' network
(`NetworkFaults`), move a VM live (`Migrating`), put its hosts back to a
snapshot before each case (`Reverting`), leave its hosts up for the next
run (`Keeping`); each the object that does it, or `Refused` with the reason
the stage or the run that asked for it is given.

Two methods are optional (`Diagnosing`), for a provider that sees more of
its hosts than the coordinator does (a VM's console): `connected(host)`, told
when the host's agent connects, and `explain(host)`, asked why a host's
agent never did.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from phalanx.model import Cluster, Host

if TYPE_CHECKING:
    from phalanx.providers.agentenv import AgentUser


class ProvisionError(Exception):
    """A host could not be brought up; the run is an infrastructure error."""


class FaultError(Exception):
    """A network fault could not be applied (unknown host, hosts without a
    network of their own); the message is shown to the stage that asked."""


@dataclass(frozen=True)
class AgentSpec:
    host: Host
    url: str  # the coordinator's agent endpoint, as this machine reaches it
    token: str  # a secret: never logged, never on a command line


@dataclass(frozen=True)
class ProviderSetup:
    """What a provider is made for: one run of one cluster. Its hosts'
    folders go under `root`; what it makes outside (namespaces, links)
    carries `run_id`, so that a crashed run's leftovers can be told apart."""

    cluster: Cluster
    root: Path
    run_id: str
    # The environment, user and working folder of the agents it starts on
    # this machine (None: this process's own, under `root`). The service
    # gives a minimal environment and another user (providers/agentenv.py).
    agent_env: Mapping[str, str] | None = None
    agent_user: AgentUser | None = None
    agent_workroot: Path | None = None


class NetworkFaults(Protocol):
    """Breaking the network between a run's hosts on demand (`phalanx-net`,
    `phalanx.net`). The coordinator's own link to the agents is never cut."""

    async def partition(self, groups: Sequence[Sequence[str]]) -> None:
        """Hosts of one group reach only each other; a host in no group
        reaches no one."""
        ...

    async def isolate(self, host: str) -> None: ...

    async def slow(self, host: str, delay: float) -> None:
        """Add `delay` seconds to every packet leaving `host`."""
        ...

    async def heal(self) -> None:
        """Undo every fault; a no-op when there is none."""
        ...


class Provider(Protocol):
    # Where the coordinator must listen for these hosts to reach it; None:
    # loopback will do. Known after `open`.
    listen_address: str | None

    def capabilities(self) -> Capabilities:
        """What it can do for the run beyond up and down (after `open`)."""
        ...

    async def open(self) -> None:
        """What the hosts share (a bridge, a network): before any agent.
        Raises ProvisionError with one clear reason when it cannot."""
        ...

    def addresses(self, hosts: list[Host]) -> dict[str, str]:
        """The address each host is reached at by the others (@host:NAME@)."""
        ...

    def diskmounts(self, host: Host) -> str:
        """The @diskmounts@ value for a host: commands that mount its disks."""
        ...

    async def up(self, specs: list[AgentSpec]) -> None: ...

    async def down(self, lost: Collection[str] = ()) -> None:
        """End every process the provider started, with its whole group;
        the agents of the hosts in `lost` without waiting for them."""
        ...

    async def close(self) -> None:
        """Remove what `open` made. Safe to call more than once."""
        ...


@runtime_checkable
class Diagnosing(Protocol):
    """What a provider may add to `Provider`, for the run's results and
    reason; the coordinator calls it when the provider has it."""

    def connected(self, host: str) -> None:
        """The host's agent has just connected (its boot's last step)."""
        ...

    def explain(self, host: str) -> str | None:
        """Why the host's agent has not connected, from what the provider
        sees of the host (a VM's last console lines); None: nothing to say."""
        ...


@dataclass(frozen=True)
class Migrated:
    """A live migration done: where the VM is now and what it cost."""

    host: str
    hypervisor: str  # the hypervisor running the VM now
    seconds: float  # from the request to the guest running at its destination
    downtime_ms: int | None  # QEMU's own measure of the pause
    moved: bool = False  # to another hypervisor


@runtime_checkable
class Migrating(Protocol):
    """A provider whose hosts migrate live (the qemu clusters' provider,
    `remote.HypervisorProvider`). Raises ProvisionError saying why not."""

    async def migrate_vm(
        self, host: str, *, to: str | None = None, mode: str = "tcp", timeout: float = 120.0
    ) -> Migrated:
        """`host`'s VM moved to a new QEMU: on its own hypervisor (`to`
        None or its name), or on the hypervisor named `to`."""
        ...


# How a provider is made (an entry point of group `phalanx.providers` names
# one): called once per run; raises ProvisionError saying why it cannot.
ProviderFactory = Callable[[ProviderSetup], Provider]


@runtime_checkable
class Reverting(Protocol):
    """A provider whose hosts go back to a snapshot (`revert: case`): the
    qemu clusters' providers."""

    async def revert(self) -> None: ...

    async def resume(self) -> None: ...


@runtime_checkable
class Attached(Protocol):
    """A provider whose hosts' agents are started elsewhere and connect on
    their own (`provider: agents`): the run gives them no token, waits for
    them, and neither shuts them down nor forgets them when it ends."""

    attached: bool


def attached(provider: Provider) -> bool:
    return isinstance(provider, Attached) and provider.attached


@runtime_checkable
class Keeping(Protocol):
    """A provider whose hosts may outlive the run (`keep: true`)."""

    @property
    def keeps(self) -> Collection[str]:
        """The tokens whose agents outlive this run: the run neither
        revokes them nor shuts those agents down. Asked as the run ends."""
        ...


@dataclass(frozen=True)
class Refused:
    """A capability a provider has not: the reason, as the stage (a
    `phalanx-net`, a `phalanx-vm`) or the run that asked for it is told."""

    reason: str


@dataclass(frozen=True)
class Capabilities:
    faults: NetworkFaults | Refused
    migration: Migrating | Refused
    revert: Reverting | Refused
    keep: Keeping | Refused

    @classmethod
    def none(cls, hosts: str) -> Capabilities:
        """Nothing beyond up and down, said of `hosts` ("local hosts")."""
        mine = f"this run's hosts are {hosts}"
        return cls(
            faults=Refused(
                "network faults need hosts with a network of their own "
                f"(provider: netns or qemu); {mine}"
            ),
            migration=Refused(f"live migration needs VMs (provider: qemu); {mine}"),
            revert=Refused(
                f"revert: case needs VMs that can be snapshotted (provider: qemu); {mine}"
            ),
            keep=Refused(f"only a cluster of VMs (provider: qemu) is kept up; {mine}"),
        )


# Why VMs on QEMU's user-mode network (or on a hypervisor elsewhere) take no faults.
NO_VM_FAULTS = (
    "network faults between VMs need them on a bridge of this machine (run as root, "
    "with the VMs on their hypervisor here); these VMs share QEMU's user-mode network "
    "or run on a hypervisor elsewhere"
)

C = TypeVar("C")


def granted(capability: C | Refused) -> C | None:
    """The object that does it; None when refused."""
    return None if isinstance(capability, Refused) else capability


def refusal(capability: object) -> str | None:
    """Why it is refused; None when it is not."""
    return capability.reason if isinstance(capability, Refused) else None


def capabilities_of(provider: Provider, hosts: str) -> Capabilities:
    """What `provider` says it can do; nothing, said of `hosts`, for a
    plug-in's provider that says nothing."""
    say = getattr(provider, "capabilities", None)
    return say() if callable(say) else Capabilities.none(hosts)
