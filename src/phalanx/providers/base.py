"""What a provider does: bring a cluster's hosts up with a connected agent
each, say how hosts reach one another, and take everything down again."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from phalanx.model import Host


class ProvisionError(Exception):
    """A host could not be brought up; the run is an infrastructure error."""


@dataclass(frozen=True)
class AgentSpec:
    host: Host
    url: str  # the coordinator's agent endpoint, as the host reaches it
    token: str  # a secret: never logged, never on a command line


class Provider(Protocol):
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
