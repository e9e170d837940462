"""The pool engine on fake worker sessions: no processes."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from phalanx.engine.pool import Pool
from phalanx.events import CaseEnded, StageEnded, StageStarted
from phalanx.model import RunResult, Status, Suite
from phalanx.tasks import Outcome
from tests.engine.fakes import FakeFleet, FakeSession, Hang, Recorder, case, host, suite

ONE_HOST = (host("localhost"),)


def pool(
    s: Suite,
    fleet: FakeFleet,
    workers: int,
    sink: Recorder | None = None,
    stop_on_error: bool = False,
) -> Pool:
    sessions = [FakeSession(fleet, "localhost", f"w{i}") for i in range(workers)]
    return Pool(s, sessions, "r1", sink or Recorder(), stop_on_error=stop_on_error)


def run(
    s: Suite,
    fleet: FakeFleet,
    workers: int,
    sink: Recorder | None = None,
    stop_on_error: bool = False,
) -> RunResult:
    return asyncio.run(pool(s, fleet, workers, sink, stop_on_error).execute())


def test_workers_never_take_the_same_case_and_share_the_work() -> None:
    names = [f"c{i}" for i in range(12)]
    fleet = FakeFleet()
    result = run(suite(*(case(n) for n in names), hosts=ONE_HOST), fleet, workers=3)
    assert [c.status for c in result.cases] == [Status.PASSED] * 12
    starts = [c for c in fleet.calls if c.what == "start"]
    assert sorted(c.case or "" for c in starts) == sorted(names)  # each case once
    assert set(Counter(c.session for c in starts)) == {"w0", "w1", "w2"}
    # A worker runs one case at a time: its calls alternate start, end.
    for worker in ("w0", "w1", "w2"):
        mine = [(c.what, c.case) for c in fleet.calls if c.session == worker]
        assert [w for w, _ in mine] == ["start", "end"] * (len(mine) // 2)
        assert all(mine[i][1] == mine[i + 1][1] for i in range(0, len(mine), 2))


def test_a_case_gets_its_own_stage_id_and_stages_run_in_order() -> None:
    fleet = FakeFleet()
    run(suite(case("a", init="i", fin="f"), hosts=ONE_HOST), fleet, workers=2)
    assert fleet.ran() == [
        ("a", "initialize", "localhost"),
        ("a", "run", "localhost"),
        ("a", "finalize", "localhost"),
    ]


def test_stop_on_error_skips_the_rest_with_the_reason() -> None:
    fleet = FakeFleet(outcomes={("b", "run", "localhost"): Outcome(exit_code=2)})
    s = suite(case("a"), case("b"), case("c"), case("d"), hosts=ONE_HOST)
    result = run(s, fleet, workers=1, stop_on_error=True)
    assert [c.status for c in result.cases] == [
        Status.PASSED,
        Status.FAILED,
        Status.SKIPPED,
        Status.SKIPPED,
    ]
    assert result.cases[1].reason == "run failed: localhost (exit code 2)"
    assert all(c.reason == "not run: --stop-on-error after b failed" for c in result.cases[2:])
    assert result.reason == "stopped after b failed (--stop-on-error)"
    assert ("c", "run", "localhost") not in fleet.ran()


def test_without_stop_on_error_a_failure_does_not_stop_the_others() -> None:
    fleet = FakeFleet(outcomes={("a", "run", "localhost"): Outcome(exit_code=1)})
    result = run(suite(case("a"), case("b"), hosts=ONE_HOST), fleet, workers=1)
    assert [c.status for c in result.cases] == [Status.FAILED, Status.PASSED]
    assert result.status is Status.FAILED


def test_a_stage_whose_task_is_none_is_skipped_without_running() -> None:
    # The case is for hosts with role db: the kind has no task for this one.
    fleet = FakeFleet()
    sink = Recorder()
    result = run(suite(case("nobody", roles=("db",)), hosts=ONE_HOST), fleet, workers=1, sink=sink)
    (stage,) = result.cases[0].stages
    assert stage.status is Status.SKIPPED and stage.hosts == []
    assert result.cases[0].status is Status.SKIPPED
    assert fleet.calls == []
    assert sink.of(StageStarted) == []
    assert [e.result.name for e in sink.of(StageEnded)] == ["run"]
    assert [e.result.status for e in sink.of(CaseEnded)] == [Status.SKIPPED]
    assert result.status is Status.SKIPPED


def test_a_failed_initialize_skips_run_in_the_pool_too() -> None:
    fleet = FakeFleet(outcomes={("a", "initialize", "localhost"): Outcome(exit_code=1)})
    result = run(suite(case("a", init="i", fin="f"), hosts=ONE_HOST), fleet, workers=1)
    a = result.cases[0]
    assert [(s.name, s.status) for s in a.stages] == [
        ("initialize", Status.FAILED),
        ("run", Status.SKIPPED),
        ("finalize", Status.PASSED),
    ]
    assert a.reason == "initialize failed: localhost (exit code 1)"


def test_the_pool_refuses_what_it_cannot_run() -> None:
    fleet = FakeFleet()
    with pytest.raises(ValueError, match="suite stages"):
        pool(suite(case("a"), hosts=ONE_HOST, initialize="x"), fleet, 1)
    with pytest.raises(ValueError, match="single-host"):
        pool(suite(case("a")), fleet, 1)
    with pytest.raises(ValueError, match="at least one worker"):
        pool(suite(case("a"), hosts=ONE_HOST), fleet, 0)


def test_a_cancel_stops_the_running_tests_keeps_their_finalize_and_starts_no_other() -> None:
    fleet = FakeFleet(outcomes={("b", "run", "localhost"): Hang()})
    cases = [case("a"), case("b", fin="f"), *(case(f"n{i}") for i in range(5))]
    engine = pool(suite(*cases, hosts=ONE_HOST), fleet, 2)

    async def go() -> RunResult:
        task = asyncio.create_task(engine.execute())
        await asyncio.wait_for(fleet.hung.wait(), timeout=10)
        engine.cancel("cancelled by SIGINT")
        return await asyncio.wait_for(task, timeout=10)

    result = asyncio.run(go())
    assert result.status is Status.CANCELLED and result.reason == "cancelled by SIGINT"
    b = result.case("b")
    assert b is not None and b.status is Status.CANCELLED
    assert [s.status for s in b.stages] == [Status.CANCELLED, Status.PASSED]
    assert ("b", "finalize", "localhost") in fleet.ran()
    started = {c for c, _, _ in fleet.ran()}
    for c in result.cases:
        if c.name not in started:
            assert c.status is Status.CANCELLED and c.reason == "cancelled by SIGINT"
    assert len(started) < len(cases)
