"""Asking agents who holds a connection on their hosts: only the agent asked
answers its own question, and one that does not answer vouches for no one."""

from __future__ import annotations

import asyncio

from phalanx.coordinator.vouching import Vouching
from phalanx.wire.messages import PeerAsk, PeerHeld


class Agent:
    """An agent's link: what was sent to it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked: list[PeerAsk] = []

    def send(self, message: object) -> None:
        assert isinstance(message, PeerAsk)
        self.asked.append(message)


async def test_each_agent_answers_only_its_own_question() -> None:
    vouching = Vouching()
    near, far, quiet = Agent("near"), Agent("far"), Agent("quiet")

    async def answer() -> None:
        while not (near.asked and far.asked and quiet.asked):
            await asyncio.sleep(0)
        (mine,), (theirs,) = near.asked, far.asked
        assert (mine.client_port, mine.server_port) == (40001, 8470)
        # `far` answers `near`'s question: not taken.
        vouching.answered("far", PeerHeld(request_id=mine.request_id, run_id="r0", key="forged"))
        vouching.answered("near", PeerHeld(request_id=mine.request_id, run_id="r1", key="k1"))
        vouching.answered("far", PeerHeld(request_id=theirs.request_id))  # holds nothing

    answering = asyncio.create_task(answer())
    found = await vouching.ask([near, far, quiet], 40001, 8470, timeout=0.5)
    await answering
    assert found == [("r1", "k1")]  # `quiet` never answered: no one
