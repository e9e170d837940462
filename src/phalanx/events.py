"""Everything that happens in a run is an event; sinks consume them.

The engine emits, in order: RunStarted; then for each stage that runs
StageStarted, HostOutput (any number), HostWaiting and HostResumed (a
host in `phalanx-sync`/`phalanx-wait`, and its release; suite runs only),
HostStageEnded (one per host, as each host ends), HostLogs (one per host whose collected logs had anything in them,
after every host ended the stage: logs are collected once the stage is over),
StageEnded (its hosts name their collected logs); a stage nobody runs (no
host has a task, or the case's initialize did not pass) has only StageEnded;
CaseEnded after a case's last stage, or for each case a failed suite
initialize skips; RunEnded last. A case the run never finished (cancelled,
interrupted) has no CaseEnded: RunEnded carries it as cancelled. A run that
could not start has only RunEnded. The pool engine interleaves the events of
cases running side by side; each carries its case's name.

An event never changes after it is emitted: results travel as frozen
records taken at the moment of the event (`HostResult`, `StageRecord`,
`CaseRecord`, `RunRecord`), never as the engine's own results, which it goes
on filling in. So a sink may keep events (a store, the web) and read them
later. Sinks (the console, the run folder, reports, the web) never talk back
to the engine.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from phalanx.model import CaseHistory, CaseResult, HostResult, RunResult, StageResult, Status


def now() -> datetime:
    return datetime.now(UTC)


# --- results as they were when an event was emitted ---------------------------

R = TypeVar("R")
# Per record class, made from the class once: a function that copies a
# working result into it (a tree run freezes a few records per test).
_freezers: dict[type, Callable[[Any], Any]] = {}


def _freezer(cls: type) -> Callable[[Any], Any]:
    found = _freezers.get(cls)
    if found is not None:
        return found
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    assert all(f.init for f in fields), f"{cls.__name__}: every field is given"
    take = operator.attrgetter(*(f.name for f in fields))
    # The tuple fields: a list becomes a tuple, of records if its items are
    # a stage's or a case's parts.
    tuples = [
        (i, _part_of(hints[f.name]))
        for i, f in enumerate(fields)
        if typing.get_origin(hints[f.name]) is tuple
    ]

    def freeze(source: Any) -> Any:
        values = list(take(source))
        for i, part in tuples:
            if part is None:
                values[i] = tuple(values[i])
            else:
                values[i] = tuple(map(_freezer(part), values[i]))
        return cls(*values)

    _freezers[cls] = freeze
    return freeze


def _freeze(cls: type[R], source: object) -> R:
    """The engine's working result `source` as the frozen record `cls`:
    every field `cls` declares, taken from `source` by name (no copy written
    out by hand), lists into tuples, a stage's or case's parts into their
    own records."""
    frozen: R = _freezer(cls)(source)
    return frozen


def _part_of(hint: Any) -> type | None:
    """The record a `tuple[Record, ...]` field holds, if it is one of ours
    made from a working result (a host's part is frozen already)."""
    if typing.get_origin(hint) is not tuple:
        return None
    (inner, *_) = typing.get_args(hint)
    return inner if inner in (StageRecord, CaseRecord) else None


@dataclass(frozen=True, slots=True)
class StageRecord:
    name: str
    status: Status
    hosts: tuple[HostResult, ...] = ()
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @classmethod
    def of(cls, r: StageResult) -> StageRecord:
        return _freeze(cls, r)

    def host(self, name: str) -> HostResult | None:
        return next((h for h in self.hosts if h.host == name), None)


@dataclass(frozen=True, slots=True)
class CaseRecord:
    name: str
    status: Status
    reason: str | None = None
    stages: tuple[StageRecord, ...] = ()
    started_at: datetime | None = None
    ended_at: datetime | None = None
    history: CaseHistory | None = None

    @classmethod
    def of(cls, r: CaseResult) -> CaseRecord:
        return _freeze(cls, r)

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    suite: str
    status: Status
    reason: str | None = None
    cluster: str | None = None
    hosts: tuple[str, ...] = ()
    stages: tuple[StageRecord, ...] = ()  # suite initialize / finalize
    cases: tuple[CaseRecord, ...] = ()
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @classmethod
    def of(cls, r: RunResult) -> RunRecord:
        return _freeze(cls, r)

    def case(self, name: str) -> CaseRecord | None:
        return next((c for c in self.cases if c.name == name), None)

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)


# --- the events -----------------------------------------------------------------


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    suite: str
    hosts: tuple[str, ...]
    cases: tuple[str, ...]
    at: datetime = field(default_factory=now)
    cluster: str | None = None


@dataclass(frozen=True)
class StageStarted:
    case: str | None  # None: a suite stage
    stage: str
    hosts: tuple[str, ...]
    at: datetime = field(default_factory=now)


@dataclass(frozen=True)
class HostOutput:
    """A piece of what a host's program wrote: its bytes, cut anywhere (in
    a line, in a UTF-8 character); a sink that shows text decodes them."""

    case: str | None
    stage: str
    host: str
    data: bytes


@dataclass(frozen=True)
class HostWaiting:
    """A host's program waits for the others: in `phalanx-sync NAME` for a
    barrier, in `phalanx-wait KEY` for a value (`what` says which)."""

    case: str | None
    stage: str
    host: str
    what: str  # `phalanx-sync ready`, `phalanx-wait port`
    at: datetime = field(default_factory=now)


@dataclass(frozen=True)
class HostResumed:
    """What a host waited for came: it runs on."""

    case: str | None
    stage: str
    host: str
    at: datetime = field(default_factory=now)


@dataclass(frozen=True)
class HostStageEnded:
    case: str | None
    stage: str
    result: HostResult
    # The engine's id of the stage: opaque, unique in the run (a store's key
    # for the result; the same case run twice has two).
    stage_id: str = ""


@dataclass(frozen=True)
class HostLogs:
    """Log files collected from a host after a stage: run-folder path → bytes."""

    case: str | None
    stage: str
    host: str
    files: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class StageEnded:
    case: str | None
    result: StageRecord


@dataclass(frozen=True)
class CaseEnded:
    result: CaseRecord


@dataclass(frozen=True)
class RunEnded:
    result: RunRecord


Event = (
    RunStarted
    | StageStarted
    | HostOutput
    | HostWaiting
    | HostResumed
    | HostLogs
    | HostStageEnded
    | StageEnded
    | CaseEnded
    | RunEnded
)


class Sink(Protocol):
    def __call__(self, event: Event, /) -> None: ...


class Fanout:
    """One sink that hands every event to several, in order."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def __call__(self, event: Event, /) -> None:
        for sink in self.sinks:
            sink(event)
