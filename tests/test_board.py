"""The run board: events in, a snapshot out."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from phalanx.board import Board, Cell, StageRow, fold, tally, tally_text
from phalanx.engine.lockstep import Lockstep
from phalanx.events import (
    CaseEnded,
    CaseRecord,
    Event,
    HostOutput,
    HostStageEnded,
    RunEnded,
    RunRecord,
    RunStarted,
    StageEnded,
    StageRecord,
    StageStarted,
)
from phalanx.model import HostResult, Status
from phalanx.tags import RunContext
from phalanx.tasks import Outcome
from tests.engine.fakes import FakeFleet, Recorder, case, suite

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
P, F, R = Status.PASSED, Status.FAILED, Status.RUNNING


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def host(
    name: str, status: Status, start: float, end: float, reason: str | None = None
) -> HostResult:
    return HostResult(
        host=name, status=status, started_at=at(start), ended_at=at(end), reason=reason
    )


def stage(
    name: str, status: Status, *hosts: HostResult, start: float = 0, end: float = 1
) -> StageRecord:
    return StageRecord(
        name=name, status=status, hosts=hosts, started_at=at(start), ended_at=at(end)
    )


START = RunStarted("r1", "demo", ("a.x", "b.x"), ("one", "two"), at(0))


def test_an_empty_board() -> None:
    snap = Board().snapshot()
    assert (snap.run_id, snap.suite, snap.hosts, snap.cases) == ("", "", (), ())
    assert snap.status is Status.PENDING and snap.current is None and snap.tally == ()


def test_a_started_run_lists_its_cases_pending() -> None:
    snap = fold([START], at=at(3))
    assert (snap.run_id, snap.suite, snap.hosts) == ("r1", "demo", ("a.x", "b.x"))
    assert [(c.name, c.status, c.cells) for c in snap.cases] == [
        ("one", Status.PENDING, (None, None)),
        ("two", Status.PENDING, (None, None)),
    ]
    assert snap.status is R and snap.seconds == 3.0
    assert snap.tally == ((Status.PENDING, 2),) and snap.done == 0
    assert snap.suite_row is None


def test_a_running_stage_is_current_with_its_hosts_and_their_last_lines() -> None:
    events: list[Event] = [
        START,
        StageStarted("one", "run", ("a.x", "b.x"), at(1)),
        HostOutput("one", "run", "a.x", b"first\nsecond\n"),
        HostOutput("one", "run", "a.x", b"  \n"),  # a blank line does not hide the last one
        HostOutput("one", "run", "b.x", b"only\n"),
    ]
    snap = fold(events, at=at(4))
    assert snap.current is not None
    assert (snap.current.case, snap.current.stage, snap.current.hosts) == (
        "one",
        "run",
        ("a.x", "b.x"),
    )
    assert snap.current.seconds == 3.0 and snap.current.running == ("a.x", "b.x")
    one = snap.case("one")
    assert one is not None and one.status is R
    assert one.cells == (Cell("run", R), Cell("run", R))
    assert one.stages == (StageRow("run", R, (("a.x", R), ("b.x", R))),)
    assert snap.last_lines == (("a.x", "second"), ("b.x", "only"))
    # A host's next stage starts with no line: the old one would mislead.
    later = fold([*events, StageStarted("two", "run", ("b.x",), at(5))])
    assert later.last_lines == (("a.x", "second"),)


def test_a_host_that_ended_shows_its_status_before_the_stage_ends() -> None:
    snap = fold(
        [
            START,
            StageStarted("one", "run", ("a.x", "b.x"), at(1)),
            HostStageEnded("one", "run", host("a.x", F, 1, 2, "exit code 1")),
        ]
    )
    one = snap.case("one")
    assert one is not None
    assert one.cells == (Cell("run", F), Cell("run", R))
    assert one.stages[0].hosts == (("a.x", F), ("b.x", R))
    assert snap.current is not None and snap.current.running == ("b.x",)


def test_a_cell_keeps_the_stage_that_went_worst() -> None:
    snap = fold(
        [
            START,
            StageStarted("one", "initialize", ("a.x", "b.x"), at(0)),
            StageEnded("one", stage("initialize", F, host("a.x", F, 0, 1), host("b.x", P, 0, 1))),
            StageEnded(
                "one",
                StageRecord(
                    name="run",
                    status=Status.SKIPPED,
                    hosts=(
                        HostResult(host="a.x", status=Status.SKIPPED),
                        HostResult(host="b.x", status=Status.SKIPPED),
                    ),
                ),
            ),
            StageStarted("one", "finalize", ("a.x", "b.x"), at(1)),
            StageEnded("one", stage("finalize", P, host("a.x", P, 1, 2), host("b.x", P, 1, 2))),
        ]
    )
    one = snap.case("one")
    assert one is not None
    assert one.cells == (Cell("initialize", F), Cell("finalize", P))
    assert [(s.name, s.status) for s in one.stages] == [
        ("initialize", F),
        ("run", Status.SKIPPED),
        ("finalize", P),
    ]
    assert snap.current is None


def test_ended_cases_have_status_time_reason_and_are_tallied() -> None:
    events: list[Event] = [
        START,
        StageStarted(None, "initialize", ("a.x", "b.x"), at(0)),
        StageEnded(None, stage("initialize", P, host("a.x", P, 0, 1), host("b.x", P, 0, 1))),
        CaseEnded(
            CaseRecord(
                name="one",
                status=F,
                reason="run failed: a.x (exit code 1)",
                started_at=at(1),
                ended_at=at(3.5),
            )
        ),
        CaseEnded(CaseRecord(name="two", status=P, started_at=at(3.5), ended_at=at(4))),
    ]
    snap = fold(events)
    assert [(c.name, c.status, c.seconds, c.reason) for c in snap.cases] == [
        ("one", F, 2.5, "run failed: a.x (exit code 1)"),
        ("two", P, 0.5, None),
    ]
    assert snap.tally == ((P, 1), (F, 1)) and snap.done == 2
    assert snap.suite_row is not None
    assert snap.suite_row.cells == (Cell("initialize", P), Cell("initialize", P))
    assert snap.suite_row.status is P


def test_run_ended_cancels_what_never_ended_and_gives_the_run_its_time() -> None:
    run = RunRecord(
        run_id="r1",
        suite="demo",
        status=Status.CANCELLED,
        reason="cancelled by alice",
        cases=(
            CaseRecord(name="one", status=P, started_at=at(0), ended_at=at(1)),
            CaseRecord(name="two", status=Status.CANCELLED, reason="the run was cancelled"),
        ),
        started_at=at(0),
        ended_at=at(7),
    )
    events: list[Event] = [
        START,
        CaseEnded(run.cases[0]),
        StageStarted("two", "run", ("a.x",), at(1)),
        HostOutput("two", "run", "a.x", b"working\n"),
        RunEnded(run),
    ]
    snap = fold(events, at=at(100))
    assert snap.status is Status.CANCELLED and snap.reason == "cancelled by alice"
    assert snap.seconds == 7.0  # the run's own, not up to the snapshot's moment
    assert [(c.status, c.reason) for c in snap.cases] == [
        (P, None),
        (Status.CANCELLED, "the run was cancelled"),
    ]
    assert snap.current is None and snap.last_lines == ()
    assert snap.tally == ((P, 1), (Status.CANCELLED, 1))


def test_a_run_that_could_not_start_has_only_run_ended() -> None:
    run = RunRecord(
        run_id="r9",
        suite="demo",
        status=Status.ERROR,
        reason="provisioning failed: no",
        hosts=("a.x",),
        cases=(CaseRecord(name="one", status=Status.SKIPPED, reason="provisioning failed: no"),),
        started_at=at(0),
        ended_at=at(2),
    )
    snap = fold([RunEnded(run)])
    assert (snap.run_id, snap.suite, snap.hosts, snap.status) == (
        "r9",
        "demo",
        ("a.x",),
        Status.ERROR,
    )
    assert [(c.name, c.status) for c in snap.cases] == [("one", Status.SKIPPED)]


def test_a_snapshot_does_not_change_when_more_events_arrive() -> None:
    board = Board()
    board.apply(START)
    board.apply(StageStarted("one", "run", ("a.x",), at(1)))
    before = board.snapshot()
    kept = dataclasses.replace(before)
    board.apply(HostStageEnded("one", "run", host("a.x", F, 1, 2)))
    board.apply(CaseEnded(CaseRecord(name="one", status=F, started_at=at(1), ended_at=at(2))))
    assert before == kept
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.status = Status.FAILED  # type: ignore[misc]


def test_the_board_of_a_real_engine_run_agrees_with_its_result() -> None:
    fleet = FakeFleet(outcomes={("b", "run", "h1"): Outcome(exit_code=1)})
    sink = Recorder()
    s = suite(case("a", init="i"), case("b"), initialize="si")
    result = asyncio.run(Lockstep(s, fleet, RunContext("r1", "127.0.0.1", 1), sink).execute())
    snap = fold(sink.events)
    assert snap.status is result.status is F
    assert [(c.name, c.status, c.reason) for c in snap.cases] == [
        (c.name, c.status, c.reason) for c in result.cases
    ]
    b = snap.case("b")
    assert b is not None and b.cells == (Cell("run", P), Cell("run", F), Cell("run", P))
    assert snap.hosts == ("h0", "h1", "h2") and snap.done == 2


def test_one_tally_for_every_console() -> None:
    counts = tally([F, P, Status.TIMEOUT, P])
    assert counts == ((P, 2), (F, 1), (Status.TIMEOUT, 1))  # in the order Status lists them
    assert tally_text(counts) == "2 passed, 1 failed, 1 timeout"
    assert tally_text(tally([])) == ""


def test_a_host_waiting_in_phalanx_sync_shows_as_waiting(tmp_path: Path) -> None:
    """Real agents: h0 reaches the barrier at once, h1 a moment later."""
    from phalanx.console import render_board
    from phalanx.events import HostResumed, HostWaiting
    from tests.coordinator.runhelpers import case as real_case
    from tests.coordinator.runhelpers import run as real_run
    from tests.coordinator.runhelpers import suite as real_suite

    script = (
        '[ "$PHALANX_SLAVENAME" = h1.phalanx.test ] && sleep 0.5\nphalanx-sync ready --timeout 20\n'
    )
    events: list[Event] = []
    result, _ = real_run(real_suite(real_case("meet", run=script), n=2), tmp_path, events=events)
    assert result.status is Status.PASSED
    waiting = [e for e in events if isinstance(e, HostWaiting)]
    assert [(w.case, w.stage, w.host, w.what) for w in waiting] == [
        ("meet", "run", "h0.phalanx.test", "phalanx-sync ready")
    ]
    at_wait = events.index(waiting[0])
    board = fold(events[: at_wait + 1])
    row = board.case("meet")
    assert row is not None
    assert row.cells[0] == Cell("run", Status.RUNNING, "phalanx-sync ready")
    assert row.cells[1] == Cell("run", Status.RUNNING)
    out = Console(file=io.StringIO(), width=120, color_system=None)
    with out.capture() as captured:
        out.print(render_board(board))
    assert "run waiting" in captured.get() and "run running" in captured.get()
    resumed = next(i for i, e in enumerate(events) if isinstance(e, HostResumed))
    assert resumed > at_wait
    after = fold(events[: resumed + 1]).case("meet")
    assert after is not None and after.cells[0] == Cell("run", Status.RUNNING)


def test_the_record_grows_with_the_run_and_ends_as_the_runs_own() -> None:
    fleet = FakeFleet(outcomes={("b", "run", "h1"): Outcome(exit_code=1, signal=None)})
    sink = Recorder()
    s = suite(case("a", init="i"), case("b"), initialize="si")
    asyncio.run(Lockstep(s, fleet, RunContext("r1", "127.0.0.1", 1), sink).execute())
    ended = sink.events[-1]
    assert isinstance(ended, RunEnded)

    # Mid-run: case a's run stage started, one host done; case b not begun.
    cut = next(
        i
        for i, e in enumerate(sink.events)
        if isinstance(e, HostStageEnded) and (e.case, e.stage) == ("a", "run")
    )
    board = Board()
    for event in sink.events[: cut + 1]:
        board.apply(event)
    record = board.record()
    assert record.status is R and record.ended_at is None and record.cluster == "c"
    assert [s.name for s in record.stages] == ["initialize"]
    assert record.stages[0] == ended.result.stages[0]  # the suite's initialize, as it ended
    a, b = record.cases
    assert (a.status, b.status, b.stages) == (R, Status.PENDING, ())
    assert [st.name for st in a.stages] == ["initialize", "run"]
    assert a.stages[0] == ended.result.cases[0].stages[0]
    running = a.stages[1]
    assert running.status is R and running.ended_at is None
    done = sink.events[cut]
    assert isinstance(done, HostStageEnded)
    by_host = {h.host: h for h in running.hosts}
    assert by_host[done.result.host] == done.result
    assert [h.status for n, h in sorted(by_host.items()) if n != done.result.host] == [R, R]
    assert set(board.running()) == {"h0", "h1", "h2"} - {done.result.host}

    # Every event later, the record is the run's own.
    for event in sink.events[cut + 1 :]:
        board.apply(event)
    assert board.record() == ended.result and board.running() == {}
