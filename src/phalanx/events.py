"""Everything that happens in a run is an event; sinks consume them.

The engine emits, in order: RunStarted, then for each stage StageStarted,
HostOutput (any number), HostStageEnded (one per host), HostLogs
(where the suite collects logs), StageEnded; CaseEnded
after a case's last stage; RunEnded last. Sinks (the console, the results
journal, reports, the web) never talk back to the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from phalanx.model import CaseResult, HostResult, RunResult, StageResult


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    suite: str
    hosts: tuple[str, ...]
    cases: tuple[str, ...]
    at: datetime = field(default_factory=now)


@dataclass(frozen=True)
class StageStarted:
    case: str | None  # None: a suite stage
    stage: str
    hosts: tuple[str, ...]
    at: datetime = field(default_factory=now)


@dataclass(frozen=True)
class HostOutput:
    case: str | None
    stage: str
    host: str
    text: str


@dataclass(frozen=True)
class HostLogs:
    """Log files collected from a host after a stage: run-folder path → bytes."""

    case: str | None
    stage: str
    host: str
    files: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class HostStageEnded:
    case: str | None
    stage: str
    result: HostResult


@dataclass(frozen=True)
class StageEnded:
    case: str | None
    result: StageResult


@dataclass(frozen=True)
class CaseEnded:
    result: CaseResult


@dataclass(frozen=True)
class RunEnded:
    result: RunResult


Event = (
    RunStarted
    | StageStarted
    | HostOutput
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
