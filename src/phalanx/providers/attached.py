"""Two providers that bring no host up: `provider: agents`, whose agents
run elsewhere and connect by themselves (`phalanx agent`), and the stand-in
for a provider that could not be made, which fails the run as it opens.
With them a run drives every cluster through the one `Provider` protocol."""

from __future__ import annotations

from collections.abc import Collection

from phalanx.model import Cluster, Host
from phalanx.providers.base import AgentSpec, Capabilities, ProvisionError


class AttachedAgents:
    """Hosts served by agents that connect on their own: nothing to start
    or end. The run gives them no token, waits for them to be connected,
    and leaves them connected for the next run (`Attached`)."""

    listen_address: str | None = None
    attached = True

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def capabilities(self) -> Capabilities:
        return Capabilities.none("served by remote agents")

    async def open(self) -> None:
        pass

    def addresses(self, hosts: list[Host]) -> dict[str, str]:
        return {h.name: h.ip or h.name for h in hosts}

    def diskmounts(self, host: Host) -> str:
        return ""

    async def up(self, specs: list[AgentSpec]) -> None:
        pass

    async def down(self, lost: Collection[str] = ()) -> None:
        pass

    async def close(self) -> None:
        pass


class Unprovided(AttachedAgents):
    """A provider that could not be made: opening it fails the run with
    the reason (a provider name no plug-in gives, a refused engine)."""

    attached = False

    def __init__(self, cluster: Cluster, reason: str) -> None:
        super().__init__(cluster)
        self.reason = reason

    async def open(self) -> None:
        raise ProvisionError(self.reason)
