"""Access taken away takes effect at once. An agent's token is checked when
its connection opens; a token revoked afterwards (`phalanx token revoke`, in
another process, or the admin page) must also end the connection it opened,
or the agent would go on taking stages. The store is the only place both
processes share, so the service looks there twice a second."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from phalanx.coordinator.agents import AgentHub
from phalanx.service.auth import AGENT_PREFIX, HYPERVISOR_PREFIX, Auth

if TYPE_CHECKING:
    from phalanx.coordinator.hypervisors import Hypervisors

log = logging.getLogger("phalanx.service")

CHECK_EVERY = 0.5  # seconds: a revoked token's connection is closed within this (and a query)
REVOKED = "its agent token was revoked"


async def revoked_agents(hub: AgentHub, auth: Auth) -> list[str]:
    """The connected agents whose store token no longer stands; each is
    dropped: its connection closed with a refusal (the agent exits), its
    stage ended in error."""
    gone = []
    for link in list(hub.links.values()):
        token = link.token
        # Tokens of agents the service started itself (a run's TokenBook)
        # end with their run; only store tokens can be revoked.
        if link.connection is None or token is None or not token.startswith(AGENT_PREFIX):
            continue
        if await auth.verify_agent_token(token) is None:
            gone.append(link.name)
    if gone:
        log.warning("closing the connections of agents whose token was revoked: %s", gone)
        hub.drop(gone, REVOKED)
    return gone


async def revoked_hypervisors(hypervisors: Hypervisors, auth: Auth) -> list[str]:
    """The connected hypervisors whose token no longer stands; each is lost
    (its runs end in error naming it, its connection is closed; its next
    connection is refused)."""
    gone = []
    for remote in list(hypervisors.remotes.values()):
        token = remote.token
        if remote.connection is None or token is None or not token.startswith(HYPERVISOR_PREFIX):
            continue
        if await auth.verify_hypervisor_token(token) is None:
            gone.append(remote.name)
            hypervisors.lose(remote, "its token was revoked")
    return gone


async def watch_agent_tokens(
    hub: AgentHub, auth: Auth, hypervisors: Hypervisors | None = None
) -> None:
    """Run until cancelled: agents' and hypervisors' revoked tokens."""
    while True:
        await asyncio.sleep(CHECK_EVERY)
        try:
            await revoked_agents(hub, auth)
            if hypervisors is not None:
                await revoked_hypervisors(hypervisors, auth)
        except Exception:  # a store hiccup: look again next time
            log.exception("checking the agents' tokens failed")
