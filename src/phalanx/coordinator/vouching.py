"""Asking agents who holds a connection on their host.

A stage on an ssh host or a VM fetches suite files over the old XrdTest
routes with no credential (coordinator/scripts.py); its address is its
host's, shared by every process there. The host's agent, which the
coordinator knows by its token, looks the connection up on its side
(`peer.ask`, host/peer.py) and answers with the run capability in the
environment of the process holding it (`peer.held`). The coordinator
checks that capability as its own: an agent vouches only for whom it found.
The question and its answer go by the link's request/reply
(coordinator/daemons.py): an answer counts only from the agent asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from phalanx.coordinator.daemons import DaemonLink, Unanswered, new_request_id
from phalanx.wire.messages import PeerAsk, PeerHeld

VOUCH_TIMEOUT = 5.0  # seconds an agent has to answer; one that does not vouches for no one


async def vouch(
    links: Iterable[DaemonLink],
    client_port: int,
    server_port: int,
    timeout: float = VOUCH_TIMEOUT,
) -> list[tuple[str, str]]:
    """(run id, key) of each capability the agents of `links` found at the
    client end of a connection from `client_port` to `server_port` on their
    hosts, as they answered within `timeout`."""

    async def ask(link: DaemonLink) -> PeerHeld | None:
        question = PeerAsk(
            request_id=new_request_id(), client_port=client_port, server_port=server_port
        )
        with contextlib.suppress(Unanswered):
            return await link.request(question, PeerHeld, timeout)
        return None

    answers = await asyncio.gather(*(ask(link) for link in links))
    return [(a.run_id, a.key) for a in answers if a is not None and a.run_id and a.key]
