"""Asking agents who holds a connection on their hosts: only the agent asked
answers its own question, and one that does not answer vouches for no one."""

from __future__ import annotations

import asyncio

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.vouching import vouch
from phalanx.wire.messages import PeerAsk, PeerHeld
from tests.coordinator.hubhelpers import FakeConnection
from tests.eventually import eventually_async


async def test_each_agent_answers_only_its_own_question() -> None:
    hub = AgentHub(TokenBook())
    connections = {name: FakeConnection() for name in ("near", "far", "quiet")}
    links = []
    for name, connection in connections.items():
        link = hub.link(name)
        link.attach(connection)
        links.append(link)
    near, far, _ = links

    async def answer() -> None:
        await eventually_async(lambda: all(c.of(PeerAsk) for c in connections.values()), within=5)
        (mine,), (theirs,) = connections["near"].of(PeerAsk), connections["far"].of(PeerAsk)
        assert (mine.client_port, mine.server_port) == (40001, 8470)
        # `far` answers `near`'s question: not taken.
        far.handle(PeerHeld(request_id=mine.request_id, run_id="r0", key="forged"))
        near.handle(PeerHeld(request_id=mine.request_id, run_id="r1", key="k1"))
        far.handle(PeerHeld(request_id=theirs.request_id))  # holds nothing

    answering = asyncio.create_task(answer())
    found = await vouch(links, 40001, 8470, timeout=0.5)
    await answering
    assert found == [("r1", "k1")]  # `quiet` never answered: no one
