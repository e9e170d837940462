"""An event is a fact: once emitted, nothing the engine does later changes
what a sink that kept it sees."""

from __future__ import annotations

import asyncio
import copy
import dataclasses

import pytest

from phalanx.engine.lockstep import Lockstep
from phalanx.engine.pool import Pool
from phalanx.engine.session import CollectedLog
from phalanx.events import CaseEnded, Event, HostStageEnded, RunEnded, StageEnded
from phalanx.model import Status
from phalanx.tags import RunContext
from phalanx.tasks import Outcome
from tests.engine.fakes import FakeFleet, FakeSession, case, host, suite


class Keeper:
    """Keeps every event, and a deep copy of it taken when it arrived."""

    def __init__(self) -> None:
        self.kept: list[Event] = []
        self.as_emitted: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.kept.append(event)
        self.as_emitted.append(copy.deepcopy(event))


def test_lockstep_events_do_not_change_after_they_are_emitted() -> None:
    fleet = FakeFleet(
        outcomes={("b", "run", "h1"): Outcome(exit_code=1, data={"n": 1})},
        output={("a", "run", "h0"): ["hello\n"], (None, "initialize", "h2"): ["x"]},
        logs={("a", "run", "h0"): [CollectedLog("/log", b"grew\n")]},
    )
    keeper = Keeper()
    s = suite(
        case("a", init="i", fin="f"), case("b"), initialize="si", finalize="sf", logs=("/log",)
    )
    result = asyncio.run(Lockstep(s, fleet, RunContext("r1", "127.0.0.1", 1), keeper).execute())
    assert result.status is Status.FAILED
    assert result.cases[0].stages[1].host("h0").logs  # filled in after HostStageEnded
    assert keeper.kept == keeper.as_emitted
    assert any(isinstance(e, HostStageEnded) for e in keeper.kept)
    assert isinstance(keeper.kept[-1], RunEnded)


def test_pool_events_do_not_change_after_they_are_emitted() -> None:
    fleet = FakeFleet(outcomes={("b", "run", "localhost"): Outcome(exit_code=1)})
    keeper = Keeper()
    s = suite(case("a"), case("b"), case("c"), hosts=(host("localhost"),))
    sessions = [FakeSession(fleet, "localhost", f"w{i}") for i in range(2)]
    engine = Pool(s, sessions, "r1", keeper, stop_on_error=True)
    asyncio.run(engine.execute())
    assert keeper.kept == keeper.as_emitted
    assert [type(e) for e in keeper.kept].count(CaseEnded) == 3


def test_what_an_event_carries_cannot_be_changed_by_a_sink() -> None:
    keeper = Keeper()
    s = suite(case("a"), hosts=(host("h0"),))
    asyncio.run(Lockstep(s, FakeFleet(), RunContext("r1", "127.0.0.1", 1), keeper).execute())
    host_ended = next(e for e in keeper.kept if isinstance(e, HostStageEnded))
    stage_ended = next(e for e in keeper.kept if isinstance(e, StageEnded))
    case_ended = next(e for e in keeper.kept if isinstance(e, CaseEnded))
    run_ended = next(e for e in keeper.kept if isinstance(e, RunEnded))
    for record, name in (
        (host_ended.result, "status"),
        (stage_ended.result, "status"),
        (case_ended.result, "reason"),
        (run_ended.result, "status"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, name, Status.FAILED)
    # Collections inside are tuples: nothing to append to.
    assert isinstance(stage_ended.result.hosts, tuple)
    assert isinstance(case_ended.result.stages, tuple)
    assert isinstance(run_ended.result.cases, tuple)
    assert isinstance(host_ended.result.logs, tuple)
