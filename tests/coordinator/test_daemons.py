"""The daemon link both hubs share: a request waits for its reply by id and
type, fails with the reason when its daemon goes away, is lost or is too
slow; a daemon's own request is answered once, however often it is resent."""

from __future__ import annotations

import asyncio

import pytest

from phalanx.coordinator.agents import AgentHub
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.daemons import Unanswered
from phalanx.wire.messages import (
    LogsCollect,
    LogsResult,
    NetDone,
    ProcessSignalled,
)
from tests.coordinator.hubhelpers import FakeConnection
from tests.eventually import eventually_async


def logs_result(rid: str) -> LogsResult:
    return LogsResult(request_id=rid, files=[])


async def test_a_request_gets_the_reply_of_its_id_and_type_and_nothing_else() -> None:
    hub = AgentHub(TokenBook())
    connection = FakeConnection()
    link = hub.link("a")
    link.attach(connection)
    asking = asyncio.create_task(
        link.request(LogsCollect(request_id="r1", stage_id="s"), LogsResult, 10)
    )
    await eventually_async(lambda: connection.of(LogsCollect), within=5)
    link.handle(logs_result("r2"))  # another request's
    link.handle(ProcessSignalled(request_id="r1"))  # the id, not the type
    await asyncio.sleep(0)
    assert not asking.done()
    link.handle(logs_result("r1"))
    assert await asyncio.wait_for(asking, 5) == logs_result("r1")


@pytest.mark.parametrize("how", ["disconnected", "lost", "silent"])
async def test_a_request_without_a_reply_fails_saying_why(how: str) -> None:
    hub = AgentHub(TokenBook())
    connection = FakeConnection()
    link = hub.link("a")
    link.attach(connection)
    timeout = 0.2 if how == "silent" else 30
    asking = asyncio.create_task(
        link.request(LogsCollect(request_id="r", stage_id="s"), LogsResult, timeout)
    )
    await eventually_async(lambda: connection.of(LogsCollect), within=5)
    if how == "disconnected":
        link.detach(connection)
    elif how == "lost":
        hub.drop(["a"], "its hypervisor is gone")
    with pytest.raises(Unanswered) as why:
        await asyncio.wait_for(asking, 10)
    expected = {
        "disconnected": "agent a disconnected",
        "lost": "agent a lost: its hypervisor is gone",
        "silent": "agent a did not answer logs.collect within 0.2s",
    }[how]
    assert str(why.value) == expected
    # Nothing waits any more: a late reply goes nowhere.
    link.handle(logs_result("r"))
    # And a link without a connection is not asked at all.
    if how != "silent":
        with pytest.raises(Unanswered, match="agent a is "):
            await link.request(LogsCollect(request_id="r2", stage_id="s"), LogsResult, 5)


async def test_a_daemons_own_request_is_answered_once_however_often_it_is_resent() -> None:
    hub = AgentHub(TokenBook())
    first = FakeConnection()
    link = hub.link("a")
    link.attach(first)
    made = 0
    release = asyncio.Event()

    async def make() -> NetDone:
        nonlocal made
        made += 1
        await release.wait()
        return NetDone(request_id="q")

    task = link.answer("q", make)
    assert task is not None
    assert link.answer("q", make) is None  # resent while being made: the same answer comes
    # The daemon reconnects before the answer is ready: it goes on the new connection.
    second = FakeConnection()
    link.detach(first)
    link.attach(second)
    release.set()
    await asyncio.wait_for(task, 5)
    assert [m.request_id for m in second.of(NetDone)] == ["q"]
    assert first.of(NetDone) == []
    # Resent once more after it was answered: sent the same answer, not made again.
    assert link.answer("q", make) is None
    assert [m.request_id for m in second.of(NetDone)] == ["q", "q"]
    assert made == 1
