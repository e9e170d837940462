"""The lockstep rules of DESIGN §2, on a fake fleet: no processes, the
order of every call recorded."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import pytest

from phalanx.engine.lockstep import Lockstep
from phalanx.engine.session import CollectedLog
from phalanx.events import (
    CaseEnded,
    HostLogs,
    HostStageEnded,
    RunEnded,
    StageEnded,
    StageStarted,
)
from phalanx.model import RunResult, Status, Suite
from phalanx.tags import RunContext
from phalanx.tasks import Outcome
from tests.engine.fakes import HOSTS, Boom, FakeFleet, Hang, Recorder, case, host, suite

FAIL = Outcome(exit_code=1)


def engine(s: Suite, fleet: FakeFleet, sink: Recorder | None = None) -> Lockstep:
    return Lockstep(s, fleet, RunContext("r1", "127.0.0.1", 8080), sink or Recorder())


def run(s: Suite, fleet: FakeFleet, sink: Recorder | None = None) -> RunResult:
    return asyncio.run(engine(s, fleet, sink).execute())


def test_no_host_starts_a_stage_before_every_host_ended_the_one_before() -> None:
    # h0 takes the longest in every stage: without a barrier h1 would race ahead.
    fleet = FakeFleet(turns={"h0": 5, "h1": 1, "h2": 2})
    s = suite(case("a", init="i", fin="f"), case("b"), initialize="si", finalize="sf")
    result = run(s, fleet)
    assert result.status is Status.PASSED
    order = [(c.what, c.case, c.stage) for c in fleet.calls if c.what in ("start", "end")]
    stages = list(dict.fromkeys((case, stage) for _, case, stage in order))
    assert stages == [
        (None, "initialize"),
        ("a", "initialize"),
        ("a", "run"),
        ("a", "finalize"),
        ("b", "run"),
        (None, "finalize"),
    ]
    for before, after in itertools.pairwise(stages):
        last_end = max(i for i, e in enumerate(order) if e == ("end", *before))
        first_start = min(i for i, e in enumerate(order) if e == ("start", *after))
        assert last_end < first_start, f"{after} started before {before} ended on every host"
    # Every stage is opened to the fleet before its first start and closed after its last end.
    assert [c.what for c in fleet.calls if c.stage == "run" and c.case == "b"] == [
        "begin",
        *["start"] * 3,
        *["end"] * 3,
        "finish",
    ]


def test_a_failed_suite_initialize_skips_every_case_and_still_finalizes() -> None:
    fleet = FakeFleet(outcomes={(None, "initialize", "h1"): FAIL})
    sink = Recorder()
    result = run(suite(case("a"), case("b"), initialize="si", finalize="sf"), fleet, sink)
    assert result.status is Status.FAILED
    reason = "suite initialize failed: h1 (exit code 1)"
    assert result.reason == reason
    assert [(c.status, c.reason, c.stages) for c in result.cases] == [
        (Status.SKIPPED, reason, []),
        (Status.SKIPPED, reason, []),
    ]
    assert {c.case for c in fleet.calls if c.what == "start"} == {None}  # no case ran
    fin = result.stage("finalize")
    assert fin is not None and fin.status is Status.PASSED
    assert [e.result.name for e in sink.of(CaseEnded)] == ["a", "b"]


def test_a_failed_case_initialize_skips_run_finalize_runs_and_the_suite_goes_on() -> None:
    fleet = FakeFleet(outcomes={("a", "initialize", "h2"): Outcome(exit_code=3)})
    sink = Recorder()
    result = run(suite(case("a", init="i", fin="f"), case("b")), fleet, sink)
    a, b = result.cases
    assert a.status is Status.FAILED
    assert a.reason == "initialize failed: h2 (exit code 3)"
    assert [(s.name, s.status) for s in a.stages] == [
        ("initialize", Status.FAILED),
        ("run", Status.SKIPPED),
        ("finalize", Status.PASSED),
    ]
    assert all(h.reason == "case initialize did not pass" for h in a.stages[1].hosts)
    assert ("a", "run", "h0") not in fleet.ran()
    assert ("a", "finalize", "h0") in fleet.ran()
    assert b.status is Status.PASSED
    # The skipped run is announced as ended, never as started.
    assert [e.stage for e in sink.of(StageStarted) if e.case == "a"] == ["initialize", "finalize"]
    assert [e.result.name for e in sink.of(StageEnded) if e.case == "a"] == [
        "initialize",
        "run",
        "finalize",
    ]


def test_a_failing_host_fails_the_case_not_the_other_hosts() -> None:
    fleet = FakeFleet(outcomes={("a", "run", "h1"): FAIL})
    result = run(suite(case("a"), case("b")), fleet)
    a, b = result.cases
    assert a.status is Status.FAILED and a.reason == "run failed: h1 (exit code 1)"
    (stage,) = a.stages
    assert {h.host: h.status for h in stage.hosts} == {
        "h0": Status.PASSED,
        "h1": Status.FAILED,
        "h2": Status.PASSED,
    }
    assert b.status is Status.PASSED
    assert result.status is Status.FAILED


def test_a_timed_out_host_is_timeout_and_a_lost_agent_is_error() -> None:
    fleet = FakeFleet(
        outcomes={
            ("a", "run", "h0"): Outcome(exit_code=-9, timed_out=True),
            ("b", "run", "h2"): Outcome(error="agent lost: no heartbeat for 10s"),
        }
    )
    result = run(suite(case("a"), case("b")), fleet)
    a, b = result.cases
    assert a.status is Status.TIMEOUT
    assert a.reason == (
        "run timeout: h0 (timed out after 600 s (the default stage timeout);"
        " its process group was killed)"
    )
    assert b.status is Status.ERROR
    assert b.reason == "run error: h2 (agent lost: no heartbeat for 10s)"
    assert result.status is Status.ERROR  # an error outranks a timeout


def test_a_timeout_says_its_limit_and_where_it_was_set_once_for_all_hosts() -> None:
    timed_out = Outcome(exit_code=-9, timed_out=True)
    fleet = FakeFleet(
        outcomes={
            ("a", "run", "h0"): timed_out,
            ("a", "run", "h1"): timed_out,
            ("b", "run", "h2"): timed_out,
        }
    )
    s = dataclasses.replace(suite(case("a"), dataclasses.replace(case("b"), timeout=3)), timeout=20)
    a, b = run(s, fleet).cases
    assert a.reason == (
        "run timeout: h0, h1 (timed out after 20 s (suite `fake`'s timeout);"
        " its process group was killed)"
    )
    assert b.reason == (
        "run timeout: h2 (timed out after 3 s (case `b`'s timeout); its process group was killed)"
    )


def test_a_case_with_roles_runs_only_on_hosts_with_them() -> None:
    hosts = (host("h0", "server"), host("h1", "client"), host("h2", "client"))
    fleet = FakeFleet()
    s = suite(case("c", init="i", roles=("client",)), case("all"), hosts=hosts)
    result = run(s, fleet)
    assert sorted(h for c, _, h in fleet.ran() if c == "c") == ["h1", "h1", "h2", "h2"]
    assert sorted(h for c, _, h in fleet.ran() if c == "all") == list(HOSTS)
    assert [h.host for h in result.cases[0].stages[1].hosts] == ["h1", "h2"]
    # Only the case's hosts meet at its barrier.
    assert [c.host for c in fleet.calls if c.what == "begin" and c.case == "c"] == ["h1,h2"] * 2


def test_a_stage_no_host_takes_part_in_is_skipped_without_starting() -> None:
    hosts = (host("h0", "server"),)
    fleet = FakeFleet()
    sink = Recorder()
    result = run(suite(case("c", roles=("client",)), hosts=hosts), fleet, sink)
    assert result.cases[0].status is Status.SKIPPED
    assert fleet.calls == []
    assert sink.of(StageStarted) == []


def test_an_exception_mid_run_still_finalizes_and_cancels_what_did_not_finish() -> None:
    fleet = FakeFleet(outcomes={("b", "run", "h1"): Boom()})
    sink = Recorder()
    lockstep = engine(suite(case("a"), case("b"), case("c"), finalize="sf"), fleet, sink)
    with pytest.raises(RuntimeError, match="the session broke"):
        asyncio.run(lockstep.execute())
    result = lockstep.result
    assert [c.status for c in result.cases] == [Status.PASSED, Status.CANCELLED, Status.CANCELLED]
    assert all(c.reason == "the run was cancelled" for c in result.cases[1:])
    assert ("c", "run", "h0") not in fleet.ran()
    fin = result.stage("finalize")
    assert fin is not None and fin.status is Status.PASSED
    assert result.status is Status.CANCELLED
    (ended,) = sink.of(RunEnded)
    assert [c.status for c in ended.result.cases] == [c.status for c in result.cases]
    assert sink.events[-1] is ended


def test_a_cancelled_run_still_finalizes_and_cancels_what_did_not_finish() -> None:
    fleet = FakeFleet(outcomes={("b", "run", "h2"): Hang()})
    lockstep = engine(suite(case("a"), case("b"), case("c"), finalize="sf"), fleet)

    async def cancel_while_b_runs() -> None:
        task = asyncio.create_task(lockstep.execute())
        await asyncio.wait_for(fleet.hung.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)

    asyncio.run(cancel_while_b_runs())
    result = lockstep.result
    assert [c.status for c in result.cases] == [Status.PASSED, Status.CANCELLED, Status.CANCELLED]
    assert sorted(h for c, s, h in fleet.ran() if c is None and s == "finalize") == list(HOSTS)
    assert fleet.calls[-1].what == "finish" and fleet.calls[-1].stage == "finalize"
    # The stage that was cut short was closed to the fleet all the same.
    assert [c.what for c in fleet.calls if c.case == "b"][-1] == "finish"


def test_logs_reach_sinks_after_every_host_ended_and_before_the_stage_ends() -> None:
    log = CollectedLog("/var/log/app.log", b"line\n")
    fleet = FakeFleet(logs={("a", "run", "h1"): [log]}, turns={"h0": 3})
    sink = Recorder()
    result = run(suite(case("a"), logs=("/var/log/app.log",)), fleet, sink)
    kinds = [type(e).__name__ for e in sink.events if getattr(e, "case", None) == "a"]
    assert kinds == ["StageStarted", *["HostStageEnded"] * 3, "HostLogs", "StageEnded"]
    (host_logs,) = sink.of(HostLogs)
    path = "cases/a/run/logs/h1/var_log_app.log"
    assert host_logs.files == ((path, b"line\n"),)
    ended = next(e for e in sink.of(HostStageEnded) if e.result.host == "h1")
    assert ended.result.logs == ()  # not collected yet when the host ended
    (stage_ended,) = [e for e in sink.of(StageEnded) if e.case == "a"]
    assert stage_ended.result.host("h1").logs == (path,)
    assert result.cases[0].stages[0].host("h1").logs == (path,)
    # Logs are collected once the stage is over for every host.
    whats = [c.what for c in fleet.calls if c.case == "a"]
    assert whats.index("logs") > whats.index("finish")


def test_a_host_still_in_a_stage_is_stopped_before_finalize_starts() -> None:
    fleet = FakeFleet(
        outcomes={("b", "run", "h0"): Hang(), ("b", "run", "h1"): Boom(once_a_host_hangs=True)}
    )
    lockstep = engine(suite(case("b"), finalize="sf"), fleet)
    with pytest.raises(RuntimeError, match="the session broke"):
        asyncio.run(lockstep.execute())
    whats = [(c.what, c.case, c.host) for c in fleet.calls]
    cancelled = whats.index(("cancelled", "b", "h0"))
    assert cancelled < whats.index(("finish", "b", ""))
    assert cancelled < whats.index(("start", None, "h0"))  # suite finalize
    assert lockstep.result.cases[0].status is Status.CANCELLED


def _cancel_when_hung(lockstep: Lockstep, fleet: FakeFleet, *requests: str) -> RunResult:
    """Run; once a host hangs, make each request ("cancel" or "abort") in turn,
    each after the fleet hung again."""

    async def go() -> RunResult:
        task = asyncio.create_task(lockstep.execute())
        for request in requests:
            await asyncio.wait_for(fleet.hung.wait(), timeout=10)
            fleet.hung.clear()
            if request == "cancel":
                lockstep.cancel("cancelled by SIGINT")
            else:
                lockstep.abort("a second signal")
        return await asyncio.wait_for(task, timeout=10)

    return asyncio.run(go())


def test_a_cancel_request_stops_the_running_stage_keeps_the_finalizes_and_ends_normally() -> None:
    fleet = FakeFleet(outcomes={("b", "run", "h2"): Hang()})
    sink = Recorder()
    s = suite(case("a"), case("b", init="i", fin="f"), case("c"), finalize="sf")
    lockstep = engine(s, fleet, sink)
    result = _cancel_when_hung(lockstep, fleet, "cancel")
    assert result.status is Status.CANCELLED and result.reason == "cancelled by SIGINT"
    a, b, c = result.cases
    assert a.status is Status.PASSED
    init, run_stage, fin = b.stages
    assert init.status is Status.PASSED and fin.status is Status.PASSED
    assert run_stage.status is Status.CANCELLED
    assert run_stage.host("h2").reason == "cancelled by SIGINT"
    assert b.status is Status.CANCELLED
    # Only the stage that was still running on a host was cancelled there.
    assert [(c_.case, c_.stage, c_.host) for c_ in fleet.calls if c_.what == "cancel"] == [
        ("b", "run", "h2")
    ]
    assert c.status is Status.CANCELLED and c.reason == "cancelled by SIGINT"
    assert ("c", "run", "h0") not in fleet.ran()
    sf = result.stage("finalize")
    assert sf is not None and sf.status is Status.PASSED
    assert sorted(h for case_, st, h in fleet.ran() if case_ is None and st == "finalize") == list(
        HOSTS
    )
    (ended,) = sink.of(RunEnded)
    assert ended.result.status is Status.CANCELLED and sink.events[-1] is ended


def test_an_abort_cuts_the_finalizes_short_too_and_starts_nothing() -> None:
    fleet = FakeFleet(outcomes={("b", "run", "h0"): Hang(), ("b", "finalize", "h1"): Hang()})
    s = suite(case("b", fin="f"), case("c"), finalize="sf")
    lockstep = engine(s, fleet)
    result = _cancel_when_hung(lockstep, fleet, "cancel", "abort")
    assert result.status is Status.CANCELLED and result.reason == "cancelled by SIGINT"
    b, c = result.cases
    fin = b.stage("finalize")
    assert fin is not None and fin.status is Status.CANCELLED
    assert fin.host("h1").reason == "cancelled by SIGINT; finalize cut short: a second signal"
    assert fin.host("h0").status is Status.PASSED  # it had ended before the abort
    assert c.status is Status.CANCELLED
    sf = result.stage("finalize")
    assert sf is not None and sf.status is Status.CANCELLED
    assert not [h for case_, st, h in fleet.ran() if case_ is None]


def test_a_cancel_before_the_run_starts_runs_nothing_but_the_report() -> None:
    fleet = FakeFleet()
    lockstep = engine(suite(case("a"), initialize="si", finalize="sf"), fleet)
    lockstep.abort("cancelled by SIGTERM")
    result = asyncio.run(lockstep.execute())
    assert fleet.ran() == []
    assert result.status is Status.CANCELLED and result.reason == "cancelled by SIGTERM"
    assert result.cases[0].status is Status.CANCELLED


def test_a_run_that_errs_says_why_at_the_top() -> None:
    fleet = FakeFleet(outcomes={("b", "run", "h1"): Outcome(error="agent lost: gone")})
    result = run(suite(case("a"), case("b")), fleet)
    assert result.status is Status.ERROR
    assert result.reason == "b: run error: h1 (agent lost: gone)"


def test_each_case_scope_ends_after_its_last_stage_and_before_the_next_case() -> None:
    fleet = FakeFleet()
    lockstep = engine(suite(case("a", init="i", fin="f"), case("b"), finalize="sf"), fleet)
    asyncio.run(lockstep.execute())
    assert fleet.ended_scopes == ["r1:1:a", "r1:2:b"]
