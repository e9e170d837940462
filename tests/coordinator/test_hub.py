"""The hub and a run's fleet, fed messages straight to their links (no processes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from phalanx.coordinator.agents import AgentHub, HostClaimed
from phalanx.coordinator.auth import TokenBook
from phalanx.coordinator.fleet import RunFleet
from phalanx.engine.session import StageScope
from phalanx.wire.messages import (
    KvSend,
    KvValue,
    KvWait,
    Pong,
    ScopeEnd,
    StageOutput,
    StageStart,
    SyncArrive,
    SyncRelease,
)
from tests.coordinator.hubhelpers import FakeConnection, order, result, until

Kept = list[tuple[str, str]]


def kept_into(records: Kept) -> Callable[[str, str], None]:
    """A `durable` that notes which results it was asked to keep."""

    def durable(stage_id: str, host: str) -> None:
        records.append((host, stage_id))

    return durable


async def test_a_result_delivered_twice_is_applied_and_kept_once_but_acked_twice():
    hub = AgentHub(TokenBook())
    connection = FakeConnection()
    link = hub.link("a")
    link.attach(connection)
    journaled: Kept = []
    output: list[bytes] = []
    with RunFleet(hub, "r1", ["a"], durable=kept_into(journaled)) as fleet:
        running = asyncio.create_task(
            fleet.session("a").run_stage(order("r1:s", "a"), output.append)
        )
        await until(lambda: connection.of(StageStart))
        link.handle(StageOutput(stage_id="r1:s", seq=1, data="hello\n"))
        link.handle(result("r1:s", exit_code=3))
        link.handle(result("r1:s", exit_code=3))
        report = await asyncio.wait_for(running, 5)
    assert report.outcome.exit_code == 3
    assert output == [b"hello\n"]
    assert journaled == [("a", "r1:s")]
    # No stage.start follows to carry them: they go alone.
    await until(lambda: connection.acks() == ["r1:s", "r1:s"])


async def test_a_pending_stage_start_is_resent_after_a_reconnect():
    hub = AgentHub(TokenBook())
    first, second = FakeConnection(), FakeConnection()
    link = hub.link("a")
    link.attach(first)
    with RunFleet(hub, "r1", ["a"]) as fleet:
        running = asyncio.create_task(fleet.session("a").run_stage(order("r1:s", "a"), print))
        await until(lambda: first.of(StageStart))
        link.detach(first)
        link.attach(second)
        assert [m.stage_id for m in second.of(StageStart)] == ["r1:s"]
        link.handle(result("r1:s"))
        report = await asyncio.wait_for(running, 5)
        # Once answered, a stage is not resent on the next reconnect.
        third = FakeConnection()
        link.detach(second)
        link.attach(third)
        assert third.of(StageStart) == []
    assert report.outcome.exit_code == 0


@pytest.mark.parametrize("how", ["silent", "disconnected"])
async def test_a_lost_agent_ends_its_pending_stages_and_releases_the_barrier(how: str):
    hub = AgentHub(TokenBook(), heartbeat_timeout=0.3)
    alive = hub.link("a")
    alive_connection = FakeConnection(
        react=lambda m: alive.handle(Pong(seq=m.seq)) if m.type == "ping" else None
    )
    alive.attach(alive_connection)
    doomed = hub.link("b")
    doomed_connection = FakeConnection()  # never answers a ping
    doomed.attach(doomed_connection)
    hub.start()
    try:
        with RunFleet(hub, "r1", ["a", "b"]) as fleet:
            fleet.begin_stage(StageScope("r1:s", frozenset({"a", "b"}), "1:c"))
            stages = [
                asyncio.create_task(fleet.session(h).run_stage(order("r1:s", h), print))
                for h in ("a", "b")
            ]
            await until(lambda: doomed_connection.of(StageStart))
            alive.handle(SyncArrive(stage_id="r1:s", name="ready", request_id="ra"))
            assert alive_connection.of(SyncRelease) == []
            if how == "disconnected":
                doomed.detach(doomed_connection)
            lost = await asyncio.wait_for(stages[1], 10)
            assert (lost.outcome.error or "").startswith("agent lost: ")
            expected = "no heartbeat" if how == "silent" else "disconnected for"
            assert expected in (lost.outcome.error or "")
            # The barrier does not wait for a host that is gone.
            await until(lambda: alive_connection.of(SyncRelease))
            assert [m.request_id for m in alive_connection.of(SyncRelease)] == ["ra"]
            alive.handle(result("r1:s"))
            done = await asyncio.wait_for(stages[0], 5)
            assert done.outcome.exit_code == 0
            # A later stage on the lost host ends at once.
            again = await fleet.session("b").run_stage(order("r1:t", "b"), print)
            assert (again.outcome.error or "").startswith("agent lost: ")
            fleet.end_stage("r1:s")
    finally:
        await hub.stop()
    if how == "silent":
        assert doomed_connection.closed is not None and doomed_connection.closed[0] == 1011


async def test_a_result_for_a_stage_of_an_ended_run_is_acked_not_applied():
    hub = AgentHub(TokenBook())
    connection = FakeConnection()
    link = hub.link("a")
    link.attach(connection)
    old: Kept = []
    with RunFleet(hub, "r1", ["a"], durable=kept_into(old)) as fleet:
        running = asyncio.create_task(fleet.session("a").run_stage(order("r1:s", "a"), print))
        await until(lambda: connection.of(StageStart))
    # The run ended (interrupted) before the agent reported.
    report = await asyncio.wait_for(running, 5)
    assert report.outcome.error == "agent lost: the run ended"
    # No run holds the host: the late result is acked and dropped.
    link.handle(result("r1:s"))
    await until(lambda: connection.acks() == ["r1:s"])
    # Another run holds it now: still not its stage.
    new: Kept = []
    with RunFleet(hub, "r2", ["a"], durable=kept_into(new)) as fleet:
        running = asyncio.create_task(fleet.session("a").run_stage(order("r2:s", "a"), print))
        await until(lambda: len(connection.of(StageStart)) == 2)
        link.handle(result("r1:s"))
        assert not running.done()
        link.handle(result("r2:s"))
        await asyncio.wait_for(running, 5)
    await until(lambda: connection.acks() == ["r1:s", "r1:s", "r2:s"])
    assert old == [] and new == [("a", "r2:s")]


async def test_a_host_held_by_a_live_run_cannot_be_claimed_by_another():
    hub = AgentHub(TokenBook())
    first = RunFleet(hub, "r1", ["a", "b"])
    with pytest.raises(HostClaimed, match="host 'b' is held by run 'r1'"):
        RunFleet(hub, "r2", ["c", "b"])
    assert hub.holders == {"a": first, "b": first}  # all or nothing: no 'c'
    first.close()
    assert hub.holders == {}
    with RunFleet(hub, "r2", ["c", "b"]) as second:
        assert hub.holders == {"b": second, "c": second}
    assert hub.holders == {}


async def test_runs_on_one_hub_keep_their_key_values_apart():
    hub = AgentHub(TokenBook())
    connections = {h: FakeConnection() for h in "abcd"}
    for host, connection in connections.items():
        hub.link(host).attach(connection)
    with RunFleet(hub, "r1", ["a", "b"]) as one, RunFleet(hub, "r2", ["c", "d"]) as two:
        # The same case at the same place in both suites: the same kv scope.
        one.begin_stage(StageScope("r1:1:c:run", frozenset("ab"), "1:c"))
        two.begin_stage(StageScope("r2:1:c:run", frozenset("cd"), "1:c"))
        hub.link("a").handle(KvSend(stage_id="r1:1:c:run", key="url", value="one"))
        hub.link("b").handle(KvWait(stage_id="r1:1:c:run", key="url", request_id="wb"))
        hub.link("d").handle(KvWait(stage_id="r2:1:c:run", key="url", request_id="wd"))
        assert connections["d"].of(KvValue) == []
        hub.link("c").handle(KvSend(stage_id="r2:1:c:run", key="url", value="two"))
        assert [m.value for m in connections["b"].of(KvValue)] == ["one"]
        assert [m.value for m in connections["d"].of(KvValue)] == ["two"]
        # A host's messages go to the run holding it, whatever stage id they name.
        hub.link("c").handle(SyncArrive(stage_id="r1:1:c:run", name="x", request_id="rc"))
        hub.link("a").handle(SyncArrive(stage_id="r1:1:c:run", name="x", request_id="ra"))
        assert connections["a"].of(SyncRelease) == []


async def test_a_case_scope_end_rides_with_the_next_stage_or_goes_alone_when_there_is_none():
    hub = AgentHub(TokenBook())
    a, b = FakeConnection(), FakeConnection()
    hub.link("a").attach(a)
    hub.link("b").attach(b)
    with RunFleet(hub, "r1", ["a", "b"]) as fleet:
        fleet.end_scope("r1:1:c1")
        # The next stage is a's only: a hears of the case's end with its
        # stage.start, b at once, on its own.
        fleet.begin_stage(StageScope("r1:2:c2:run", frozenset({"a"}), "2:c2"))
        assert [m.scope for m in b.of(ScopeEnd)] == ["r1:1:c1"]
        output: list[bytes] = []
        running = asyncio.create_task(
            fleet.session("a").run_stage(order("r1:2:c2:run", "a"), output.append)
        )
        await until(lambda: a.of(StageStart))
        (start,) = a.of(StageStart)
        assert start.end_scopes == ["r1:1:c1"] and a.of(ScopeEnd) == []
        # After a reconnect the resent stage.start still carries it.
        again = FakeConnection()
        hub.link("a").attach(again)
        await until(lambda: again.of(StageStart))
        assert again.of(StageStart)[0].end_scopes == ["r1:1:c1"]
        hub.link("a").handle(result("r1:2:c2:run"))
        await asyncio.wait_for(running, 5)
        fleet.end_stage("r1:2:c2:run")
        fleet.end_scope("r1:2:c2")
    # The run's last case ends with the run.
    assert [m.scope for m in again.of(ScopeEnd)] == ["r1:2:c2"]
    assert [m.scope for m in b.of(ScopeEnd)] == ["r1:1:c1", "r1:2:c2"]


async def test_an_observer_hears_of_connects_disconnects_and_heartbeats_only_now_and_then():
    from phalanx.coordinator.agents import Sighting

    sightings: list[Sighting] = []
    hub = AgentHub(TokenBook(), on_seen=sightings.append, seen_interval=3600)
    link = hub.link("a")
    link.version, link.labels, link.address = "9.9", {"rack": "r1"}, "10.0.0.7"
    connection = FakeConnection()
    link.attach(connection)
    for seq in range(50):
        link.handle(Pong(seq=seq))
    link.detach(connection)
    assert sightings == [
        Sighting("a", "9.9", {"rack": "r1"}, "10.0.0.7", True),
        Sighting("a", "9.9", {"rack": "r1"}, "10.0.0.7", False),
    ]  # fifty pongs, none of them written

    sightings.clear()
    hub.seen_interval = 0  # every sign of life is due
    link.attach(connection)
    link.handle(Pong(seq=1))
    assert [s.connected for s in sightings] == [True, True]


async def test_an_observer_that_fails_costs_the_agent_nothing():
    def broken(_: object) -> None:
        raise RuntimeError("the database is gone")

    hub = AgentHub(TokenBook(), on_seen=broken, seen_interval=0)
    link = hub.link("a")
    link.attach(FakeConnection())
    link.handle(Pong(seq=1))
    assert link.connected.is_set()


async def test_without_an_observer_the_hub_records_nothing():
    hub = AgentHub(TokenBook())  # as `phalanx run` makes it
    link = hub.link("a")
    connection = FakeConnection()
    link.attach(connection)
    link.handle(Pong(seq=1))
    link.detach(connection)
    assert link.reported == 0.0


async def test_before_each_case_once_anything_ran_the_hosts_are_reverted_first():
    """`revert: case`: the fleet awaits `before_case` before the first stage
    of each case once anything ran (here a suite initialize), not before
    every stage; its error is the case's stages' error. The hub drops a
    replaced agent's connection without calling it lost, takes its
    successor, and calls one that does not come back lost."""
    hub = AgentHub(TokenBook(), heartbeat_timeout=0.3)
    link = hub.link("a")

    def answering() -> FakeConnection:
        return FakeConnection(
            react=lambda m: link.handle(Pong(seq=m.seq)) if m.type == "ping" else None
        )

    old = answering()
    link.attach(old)
    reverts: list[str] = []
    problems: list[str | None] = [None, "revert failed: no"]

    async def before_case() -> str | None:
        reverts.append("revert")
        hub.replace(["a"])
        link.attach(answering())
        return problems.pop(0)

    hub.start()
    try:
        with RunFleet(hub, "r1", ["a"], before_case=before_case) as fleet:

            async def stage(sid: str, kv_scope: str) -> str | None:
                fleet.begin_stage(StageScope(sid, frozenset({"a"}), kv_scope))
                running = asyncio.create_task(fleet.session("a").run_stage(order(sid, "a"), print))

                def sent() -> bool:
                    connection = link.connection  # the one after a revert
                    assert isinstance(connection, FakeConnection)
                    return any(m.stage_id == sid for m in connection.of(StageStart))

                await until(lambda: running.done() or sent())
                if not running.done():
                    link.handle(result(sid))
                report = await asyncio.wait_for(running, 5)
                fleet.end_stage(sid)
                return report.outcome.error

            assert await stage("r1:init", "0:suite") is None
            assert reverts == []
            fleet.begin_case("first", "r1:1:first")
            assert await stage("r1:1:run", "1:first") is None
            assert reverts == ["revert"]
            assert old.closed == (1000, "replaced: its VM was restored")
            assert link.lost is None
            assert await stage("r1:1:check", "1:first") is None
            assert reverts == ["revert"]  # once per case
            fleet.begin_case("second", "r1:2:second")
            assert await stage("r1:2:run", "2:second") == "revert failed: no"
            assert reverts == ["revert", "revert"]
        # A replaced agent that does not come back is lost, as any other.
        hub.replace(["a"])
        await until(lambda: link.lost is not None)
        assert (link.lost or "").startswith("disconnected for")
    finally:
        await hub.stop()
