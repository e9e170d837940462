"""Hosts without processes: a `Fleet` whose sessions end each stage the way
a test scripted it, and remember the order things happened in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from phalanx.engine.session import CollectedLog, StageOrder, StageReport, StageScope
from phalanx.events import Event
from phalanx.model import Case, CaseHistory, Cluster, Host, Nemesis, Script, Suite
from phalanx.tasks import Outcome

Key = tuple[str | None, str, str]  # case (None: the suite), stage, host
PASS = Outcome(exit_code=0)
E = TypeVar("E")


@dataclass(frozen=True)
class Hang:
    """The host never ends the stage (until the run is cancelled)."""


@dataclass(frozen=True)
class Boom:
    """The session itself raises: a bug, not a host problem."""

    message: str = "the session broke"
    once_a_host_hangs: bool = False  # raise only when another host is stuck in its stage


Script_ = Outcome | Hang | Boom


@dataclass(frozen=True)
class Call:
    what: str  # "start", "end", "cancelled"; the fleet's "begin", "finish"; "logs"
    case: str | None
    stage: str
    host: str = ""
    session: str = ""  # which session (a pool worker) did it


@dataclass
class FakeFleet:
    """`outcomes[(case, stage, host)]`: how that host ends that stage (passes
    when not named). `turns[host]`: how many times the host lets others run
    while in a stage, so hosts end stages in a different order than they
    started them."""

    outcomes: dict[Key, Script_] = field(default_factory=dict)
    output: dict[Key, list[str]] = field(default_factory=dict)
    logs: dict[Key, list[CollectedLog]] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    scopes: dict[str, StageScope] = field(default_factory=dict)
    hung: asyncio.Event = field(default_factory=asyncio.Event)
    # Stage ids cancelled through a session: a hung host then ends its stage cancelled.
    cancels: dict[str, asyncio.Event] = field(default_factory=dict)
    ended_scopes: list[str] = field(default_factory=list)  # cases over, in order
    begun_cases: list[str] = field(default_factory=list)  # in order
    histories: dict[str, CaseHistory] = field(default_factory=dict)  # what history() gives
    nemeses: list[tuple[str, tuple[str, ...], Nemesis]] = field(default_factory=list)
    where: dict[str, tuple[str | None, str]] = field(
        default_factory=dict
    )  # stage id -> case, stage

    def session(self, host: str) -> FakeSession:
        return FakeSession(self, host, host)

    def begin_case(self, case: str, scope: str) -> None:
        self.begun_cases.append(case)

    def begin_stage(self, scope: StageScope) -> None:
        self.scopes[scope.stage_id] = scope
        case, stage = self.where[scope.stage_id] = scope.case, scope.stage
        self.calls.append(Call("begin", case, stage, ",".join(sorted(scope.hosts))))

    def end_stage(self, stage_id: str) -> None:
        case, stage = self.where[stage_id]
        self.calls.append(Call("finish", case, stage))

    def end_scope(self, scope: str) -> None:
        self.ended_scopes.append(scope)

    def history(self, case: str) -> CaseHistory | None:
        return self.histories.get(case)

    def nemesis(
        self, case: str, hosts: Sequence[str], spec: Nemesis, duration: float
    ) -> AbstractAsyncContextManager[None]:
        self.nemeses.append((case, tuple(hosts), spec))
        return contextlib.nullcontext()

    def ran(self, what: str = "start") -> list[Key]:
        return [(c.case, c.stage, c.host) for c in self.calls if c.what == what]


class FakeSession:
    def __init__(self, fleet: FakeFleet, host: str, name: str) -> None:
        self.fleet = fleet
        self.host = host
        self.name = name

    async def run_stage(self, order: StageOrder, on_output: Callable[[bytes], None]) -> StageReport:
        case, stage = fleet_where = order.case, order.stage
        self.fleet.where[order.stage_id] = fleet_where
        key = (case, stage, order.host)
        fleet = self.fleet
        started = datetime.now(UTC)
        fleet.calls.append(Call("start", case, stage, order.host, self.name))
        for _ in range(fleet.turns.get(order.host, 1)):
            await asyncio.sleep(0)
        for text in fleet.output.get(key, []):
            on_output(text.encode())
        outcome = fleet.outcomes.get(key, PASS)
        if isinstance(outcome, Hang):
            fleet.hung.set()
            try:  # ends only by being cancelled: a cancel request, or the task's
                await fleet.cancels.setdefault(order.stage_id, asyncio.Event()).wait()
            finally:
                fleet.calls.append(Call("cancelled", case, stage, order.host, self.name))
            return StageReport(Outcome(cancelled=True), started, datetime.now(UTC))
        if isinstance(outcome, Boom):
            if outcome.once_a_host_hangs:
                await fleet.hung.wait()
            raise RuntimeError(outcome.message)
        assert isinstance(outcome, Outcome)
        fleet.calls.append(Call("end", case, stage, order.host, self.name))
        return StageReport(outcome, started, datetime.now(UTC))

    def cancel(self, stage_id: str) -> None:
        case, stage = self.fleet.where[stage_id]
        self.fleet.calls.append(Call("cancel", case, stage, self.host, self.name))
        self.fleet.cancels.setdefault(stage_id, asyncio.Event()).set()

    async def collect_logs(self, stage_id: str) -> list[CollectedLog]:
        case, stage = self.fleet.where[stage_id]
        self.fleet.calls.append(Call("logs", case, stage, self.host, self.name))
        return self.fleet.logs.get((case, stage, self.host), [])


# --- suites -------------------------------------------------------------------

HOSTS = ("h0", "h1", "h2")


def host(name: str, *roles: str) -> Host:
    return Host(name=name, roles=roles)


def case(
    name: str,
    init: str | None = None,
    run: str | None = "true",
    fin: str | None = None,
    roles: tuple[str, ...] = (),
    kind: str = "scripts",
) -> Case:
    stages = {
        stage: Script(text=text)
        for stage, text in (("initialize", init), ("run", run), ("finalize", fin))
        if text is not None
    }
    return Case(name=name, stages=stages, roles=roles, kind=kind)


def suite(
    *cases: Case,
    hosts: tuple[Host, ...] | None = None,
    initialize: str | None = None,
    finalize: str | None = None,
    logs: tuple[str, ...] = (),
) -> Suite:
    return Suite(
        name="fake",
        cluster=Cluster(name="c", hosts=hosts or tuple(host(h) for h in HOSTS)),
        cases=cases,
        initialize=Script(text=initialize) if initialize else None,
        finalize=Script(text=finalize) if finalize else None,
        logs=logs,
    )


class Recorder:
    """A sink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]
