"""The run board: what a person watching a run sees, as one value.

Events go in (`Board.apply`); an immutable `Snapshot` comes out: the run's
id, suite, hosts and status, each case with its status, time and reason,
each case's stages and the hosts on them, a cell per case and host (a host
waiting in `phalanx-sync`/`phalanx-wait` says so), the stage running now,
the tally by status and the last line each host printed in its current
stage. `window` picks the rows a screen has room for. The live and plain
consoles render from it, and only from it; the tree console prints a
test's line from its CaseEnded record, the same status, time and reason
the board folds from it.

The same fold keeps the run's record as far as it has come (`record`): the
`RunRecord` that `RunEnded` will carry, with the stages running now (their
hosts that have not ended `running`) and the cases not begun (`pending`).
The service's API document, its web pages and their live updates are that
record, as results.json is the final one.

Pure: no I/O, no terminal, no clock. How long something still running has
taken needs a moment to measure to; the caller passes one to `snapshot`.
Everything else comes from the times the events carry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from phalanx import layout
from phalanx.events import (
    CaseEnded,
    CaseRecord,
    Event,
    HostOutput,
    HostResumed,
    HostStageEnded,
    HostWaiting,
    RunEnded,
    RunRecord,
    RunStarted,
    StageEnded,
    StageRecord,
    StageStarted,
)
from phalanx.model import HostResult, Status, seconds, worst

Tally = tuple[tuple[Status, int], ...]

LAST_LINE_BYTES = 1024  # of each piece of output, for the last line a host printed


def tally(statuses: Iterable[Status]) -> Tally:
    """How many of each status, in the order `Status` lists them; none of a
    status: not listed."""
    counts = Counter(statuses)
    return tuple((s, counts[s]) for s in Status if counts[s])


def tally_text(counts: Tally) -> str:
    """`1 passed, 2 failed`; empty when there is nothing to count."""
    return ", ".join(f"{n} {status.value}" for status, n in counts)


@dataclass(frozen=True, slots=True)
class Cell:
    """What a case shows for one host: its current stage while running,
    afterwards the stage that went worst (so `initialize failed` is not
    hidden by the `run skipped` after it)."""

    stage: str
    status: Status
    waiting: str | None = None  # running, but waiting for the others: on what


@dataclass(frozen=True, slots=True)
class StageRow:
    name: str
    status: Status
    hosts: tuple[tuple[str, Status], ...]  # in the order they were named


@dataclass(frozen=True, slots=True)
class Row:
    """A case, or the suite's own stages (`name` None)."""

    name: str | None
    status: Status
    seconds: float | None  # None: not ended
    reason: str | None
    cells: tuple[Cell | None, ...]  # one per host of the snapshot; None: not on it yet
    stages: tuple[StageRow, ...]


@dataclass(frozen=True, slots=True)
class Current:
    """The stage that started last and has not ended."""

    case: str | None
    stage: str
    hosts: tuple[str, ...]  # the hosts it started on
    running: tuple[str, ...]  # those of them that have not ended it yet
    started_at: datetime
    seconds: float | None  # up to the snapshot's moment; None: no moment given


@dataclass(frozen=True, slots=True)
class Snapshot:
    run_id: str
    suite: str
    hosts: tuple[str, ...]
    status: Status
    reason: str | None
    started_at: datetime | None
    ended_at: datetime | None
    seconds: float | None  # the run's, ended or up to the snapshot's moment
    suite_row: Row | None  # None: no suite stage so far
    cases: tuple[Row, ...]
    current: Current | None
    tally: Tally  # of the cases
    done: int  # cases that ended
    last_lines: tuple[tuple[str, str], ...]  # host, last line it printed in its current stage

    def case(self, name: str) -> Row | None:
        return next((c for c in self.cases if c.name == name), None)


@dataclass
class _Case:
    status: Status = Status.PENDING
    seconds: float | None = None
    reason: str | None = None


@dataclass
class _Live:
    """A stage that started and has not ended: its hosts' records so far."""

    started: StageStarted
    ended: dict[str, HostResult]
    printed: set[str]  # hosts that wrote output (they have an output file)

    def record(self) -> StageRecord:
        event = self.started
        hosts = tuple(
            self.ended.get(host)
            or HostResult(
                host=host,
                status=Status.RUNNING,
                started_at=event.at,
                output=(
                    layout.output_path(event.case, event.stage, host)
                    if host in self.printed
                    else None
                ),
            )
            for host in event.hosts
        )
        return StageRecord(event.stage, Status.RUNNING, hosts, started_at=event.at)


class Board:
    """Folds events into the run's state. `apply` is cheap (a few dictionary
    updates): it runs inside the engine's emit; `snapshot` copies."""

    def __init__(self) -> None:
        self._reset("", "", (), ())

    def _reset(
        self, run_id: str, suite: str, hosts: tuple[str, ...], cases: tuple[str, ...]
    ) -> None:
        self.run_id, self.suite = run_id, suite
        self._hosts: dict[str, None] = dict.fromkeys(hosts)  # a set that keeps its order
        self._cases: dict[str, _Case] = {name: _Case() for name in cases}
        self._suite_row = False
        self._cells: dict[tuple[str | None, str], Cell] = {}
        self._settled: dict[tuple[str | None, str], Cell] = {}
        self._stages: dict[str | None, dict[str, tuple[Status, dict[str, Status]]]] = {}
        self._current: StageStarted | None = None
        self._status = Status.PENDING
        self._reason: str | None = None
        self._started_at: datetime | None = None
        self._ended_at: datetime | None = None
        self._last_line: dict[str, str] = {}
        self._cluster: str | None = None
        # the record: stages ended (by case; None: the suite's), stages running, cases ended
        self._ended_stages: dict[str | None, list[StageRecord]] = {}
        self._live: dict[tuple[str | None, str], _Live] = {}
        self._case_records: dict[str, CaseRecord] = {}
        self._run_record: RunRecord | None = None

    # -- events in --

    def apply(self, event: Event) -> None:
        match event:
            case RunStarted():
                self._reset(event.run_id, event.suite, event.hosts, event.cases)
                self._status, self._started_at = Status.RUNNING, event.at
                self._cluster = event.cluster
            case StageStarted():
                self._stage_started(event)
                self._live[(event.case, event.stage)] = _Live(event, {}, set())
            case HostOutput():
                self._output(event.host, event.data)
                if (live := self._live.get((event.case, event.stage))) is not None:
                    live.printed.add(event.host)
            case HostWaiting():
                self._waiting(event.case, event.stage, event.host, event.what)
            case HostResumed():
                self._waiting(event.case, event.stage, event.host, None)
            case HostStageEnded():
                self._host_ended(event)
                if (live := self._live.get((event.case, event.stage))) is not None:
                    live.ended[event.result.host] = event.result
            case StageEnded():
                self._stage_ended(event)
                self._live.pop((event.case, event.result.name), None)
                self._ended_stages.setdefault(event.case, []).append(event.result)
            case CaseEnded():
                self._case_ended(event.result)
                self._case_records[event.result.name] = event.result
            case RunEnded():
                self._run_ended(event.result)
                self._run_record = event.result
                self._live.clear()

    def _stage_started(self, event: StageStarted) -> None:
        self._see(event.case)
        self._current = event
        on = dict.fromkeys(event.hosts, Status.RUNNING)
        self._stages.setdefault(event.case, {})[event.stage] = (Status.RUNNING, on)
        for host in event.hosts:
            self._hosts.setdefault(host)
            self._cells[(event.case, host)] = Cell(event.stage, Status.RUNNING)
            self._last_line.pop(host, None)  # a new stage: old output would mislead
        if event.case is not None:
            self._cases[event.case].status = Status.RUNNING

    def _output(self, host: str, data: bytes) -> None:
        # Only the end of the piece is looked at: a piece costs the same
        # whatever came before it, and a huge one no more than a small one.
        tail = data[-LAST_LINE_BYTES:].rstrip(b"\r\n")
        if not tail.strip():
            return
        line = tail.rpartition(b"\n")[2]
        if len(line) < len(tail) or len(data) <= LAST_LINE_BYTES:
            self._last_line[host] = line.decode("utf-8", errors="replace")
        else:  # the end of a line longer than the piece looked at
            self._last_line[host] = "…" + line.decode("utf-8", errors="replace")

    def _waiting(self, case: str | None, stage: str, host: str, what: str | None) -> None:
        cell = self._cells.get((case, host))
        if cell is not None and cell.stage == stage and cell.status is Status.RUNNING:
            self._cells[(case, host)] = Cell(stage, Status.RUNNING, what)

    def _host_ended(self, event: HostStageEnded) -> None:
        host = event.result
        self._settle(event.case, host.host, event.stage, host.status)
        started = self._stages.get(event.case, {}).get(event.stage)
        if started is not None:
            started[1][host.host] = host.status

    def _stage_ended(self, event: StageEnded) -> None:
        self._see(event.case)
        stage = event.result
        on = {h.host: h.status for h in stage.hosts}
        self._stages.setdefault(event.case, {})[stage.name] = (stage.status, on)
        for ended in stage.hosts:
            self._hosts.setdefault(ended.host)
            self._settle(event.case, ended.host, stage.name, ended.status)
        current = self._current
        if current is not None and (current.case, current.stage) == (event.case, stage.name):
            self._current = None

    def _case_ended(self, case: CaseRecord) -> None:
        self._see(case.name)
        took = seconds(case.started_at, case.ended_at) if case.started_at else None
        self._cases[case.name] = _Case(case.status, took, case.reason)

    def _see(self, case: str | None) -> None:
        if case is None:
            self._suite_row = True
        elif case not in self._cases:
            self._cases[case] = _Case()

    def _settle(self, case: str | None, host: str, stage: str, status: Status) -> None:
        key = (case, host)
        before = self._settled.get(key)
        if before is None or worst([before.status, status]) is status:
            self._settled[key] = Cell(stage, status)
        self._cells[key] = self._settled[key]

    def _run_ended(self, run: RunRecord) -> None:
        if not self.run_id:  # the run could not start: RunEnded is all there is
            self.run_id, self.suite = run.run_id, run.suite
            self._hosts.update(dict.fromkeys(run.hosts))
        for case in run.cases:  # cases the run cancelled have no CaseEnded
            known = self._cases.get(case.name)
            if known is None or known.status is not case.status:
                self._case_ended(case)
        self._status, self._reason = run.status, run.reason
        self._started_at = run.started_at or self._started_at  # the engine's own stamps
        self._ended_at = run.ended_at
        self._current = None
        self._last_line.clear()

    # -- the record so far --

    def record(self) -> RunRecord:
        """The run's record as far as it has come: once the run has ended,
        the one `RunEnded` carried."""
        if self._run_record is not None:
            return self._run_record
        return RunRecord(
            run_id=self.run_id,
            suite=self.suite,
            status=self._status,
            reason=self._reason,
            cluster=self._cluster,
            hosts=tuple(self._hosts),
            stages=self._stage_records(None),
            cases=tuple(self._case_record(name) for name in self._cases),
            started_at=self._started_at,
        )

    def running(self) -> dict[str, tuple[str | None, str, datetime]]:
        """Each host in a stage now: its case (None: a suite stage), the
        stage, and when the stage started."""
        return {
            host: (live.started.case, live.started.stage, live.started.at)
            for live in self._live.values()
            for host in live.started.hosts
            if host not in live.ended
        }

    def _stage_records(self, case: str | None) -> tuple[StageRecord, ...]:
        running = [live.record() for (c, _), live in self._live.items() if c == case]
        return (*self._ended_stages.get(case, ()), *running)

    def _case_record(self, name: str) -> CaseRecord:
        if (ended := self._case_records.get(name)) is not None:
            return ended
        stages = self._stage_records(name)
        return CaseRecord(
            name=name,
            status=self._cases[name].status,
            stages=stages,
            started_at=stages[0].started_at if stages else None,
        )

    # -- a snapshot out --

    def case(self, name: str) -> Row | None:
        """One case's row, without copying the whole board."""
        state = self._cases.get(name)
        return None if state is None else self._row(name, state, tuple(self._hosts))

    def tally(self) -> Tally:
        return tally(c.status for c in self._cases.values())

    def snapshot(self, at: datetime | None = None) -> Snapshot:
        """The board now; `at`: the moment to measure what still runs up to."""
        hosts = tuple(self._hosts)
        current = None
        if self._current is not None:
            started = self._current
            _, on = self._stages[started.case][started.stage]
            current = Current(
                started.case,
                started.stage,
                started.hosts,
                tuple(h for h in started.hosts if on.get(h) is Status.RUNNING),
                started.at,
                seconds(started.at, at) if at is not None else None,
            )
        if self._ended_at is not None:
            took: float | None = seconds(self._started_at, self._ended_at)
        else:
            took = seconds(self._started_at, at) if at is not None and self._started_at else None
        return Snapshot(
            run_id=self.run_id,
            suite=self.suite,
            hosts=hosts,
            status=self._status,
            reason=self._reason,
            started_at=self._started_at,
            ended_at=self._ended_at,
            seconds=took,
            suite_row=self._suite(hosts) if self._suite_row else None,
            cases=tuple(self._row(name, state, hosts) for name, state in self._cases.items()),
            current=current,
            tally=self.tally(),
            done=sum(1 for c in self._cases.values() if c.status.done),
            last_lines=tuple((h, self._last_line[h]) for h in hosts if h in self._last_line),
        )

    def _suite(self, hosts: tuple[str, ...]) -> Row:
        statuses = [status for status, _ in self._stages.get(None, {}).values()]
        return self._row(None, _Case(worst(statuses, empty=Status.PENDING)), hosts)

    def _row(self, name: str | None, state: _Case, hosts: tuple[str, ...]) -> Row:
        stages = tuple(
            StageRow(stage, status, tuple(on.items()))
            for stage, (status, on) in self._stages.get(name, {}).items()
        )
        return Row(
            name=name,
            status=state.status,
            seconds=state.seconds,
            reason=state.reason,
            cells=tuple(self._cells.get((name, h)) for h in hosts),
            stages=stages,
        )


def fold(events: Iterable[Event], at: datetime | None = None) -> Snapshot:
    """The board after `events`."""
    board = Board()
    for event in events:
        board.apply(event)
    return board.snapshot(at)


# --- what a screen has room for ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Elided:
    """Consecutive rows a view leaves out, counted by status."""

    tally: Tally

    @property
    def count(self) -> int:
        return sum(n for _, n in self.tally)


def window(rows: tuple[Row, ...], limit: int = 24, before: int = 2) -> list[Row | Elided]:
    """At most about `limit` of `rows`, in order: the case running (or next
    to run) with `before` rows before it and what follows, and every case
    that ended without passing (the latest, if there are more than room);
    each stretch left out becomes one `Elided`."""
    if len(rows) <= limit:
        return list(rows)
    running = [i for i, r in enumerate(rows) if r.status is Status.RUNNING]
    if running:
        focus = running[0]
    else:  # between cases, or over: the first not ended, else the end
        focus = next((i for i, r in enumerate(rows) if not r.status.done), len(rows) - 1)
    bad = [i for i, r in enumerate(rows) if r.status.done and not r.status.ok]
    room = max(limit - len(bad), limit // 2)
    keep = set(range(max(0, focus - before), min(len(rows), focus - before + room)))
    keep |= set(running)
    room_for_bad = max(limit - len(keep), 0)
    keep |= set(bad[len(bad) - room_for_bad :] if len(bad) > room_for_bad else bad)
    shown: list[Row | Elided] = []
    left_out: list[Status] = []
    for i, row in enumerate(rows):
        if i in keep:
            if left_out:
                shown.append(Elided(tally(left_out)))
                left_out = []
            shown.append(row)
        else:
            left_out.append(row.status)
    if left_out:
        shown.append(Elided(tally(left_out)))
    return shown
