"""Asking agents who holds a connection on their host.

A stage on an ssh host or a VM fetches suite files over the old XrdTest
routes with no credential (coordinator/scripts.py); its address is its
host's, shared by every process there. The host's agent, which the
coordinator knows by its token, looks the connection up on its side
(`peer.ask`, host/peer.py) and answers with the run capability in the
environment of the process holding it (`peer.held`). The coordinator
checks that capability as its own: an agent vouches only for whom it found.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Protocol

from phalanx.wire.messages import PeerAsk, PeerHeld

VOUCH_TIMEOUT = 5.0  # seconds an agent has to answer; one that does not vouches for no one


class Asked(Protocol):
    """An agent's link, as far as a question needs it."""

    name: str

    def send(self, message: PeerAsk) -> None: ...


class Vouching:
    """The questions sent and not answered yet."""

    def __init__(self) -> None:
        # request id -> (the agent asked, its answer)
        self._asked: dict[str, tuple[str, asyncio.Future[PeerHeld]]] = {}

    async def ask(
        self,
        links: Iterable[Asked],
        client_port: int,
        server_port: int,
        timeout: float = VOUCH_TIMEOUT,
    ) -> list[tuple[str, str]]:
        """(run id, key) of each capability the agents of `links` found at
        the client end of a connection from `client_port` to `server_port`
        on their hosts, as they answered within `timeout`."""
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[PeerHeld]] = {}
        for link in links:
            rid = uuid.uuid4().hex
            futures[rid] = loop.create_future()
            self._asked[rid] = (link.name, futures[rid])
            link.send(PeerAsk(request_id=rid, client_port=client_port, server_port=server_port))
        try:
            if futures:
                await asyncio.wait(futures.values(), timeout=timeout)
        finally:
            for rid in futures:
                self._asked.pop(rid, None)
        found = []
        for future in futures.values():
            if future.done() and not future.cancelled():
                held = future.result()
                if held.run_id and held.key:
                    found.append((held.run_id, held.key))
        return found

    def answered(self, agent: str, message: PeerHeld) -> None:
        """An answer from `agent`: taken only from the agent that was asked."""
        asked = self._asked.get(message.request_id)
        if asked is not None and asked[0] == agent and not asked[1].done():
            asked[1].set_result(message)
