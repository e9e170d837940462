"""What happens in a declarative test, as modules see it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestStarted:
    pass


@dataclass(frozen=True)
class ProcessOutput:
    process: str
    line: str  # without its newline


@dataclass(frozen=True)
class ProcessExited:
    process: str
    exit_code: int


@dataclass(frozen=True)
class TimerFired:
    name: str


Event = TestStarted | ProcessOutput | ProcessExited | TimerFired
