"""The base of every task type, the outcome of any, and the plain JSON form a
task takes to a child process of the runner (the wire checks its own)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar


@dataclass(frozen=True)
class Task:
    """What one host runs for one stage; subclasses are the task types.

    `type` names the host-side runner; `version` rises whenever a field is
    added, removed or changes meaning, so that an agent of another phalanx
    version says it cannot run the task instead of misreading it."""

    type: ClassVar[str]
    version: ClassVar[int]


@dataclass(frozen=True)
class Outcome:
    """How a host's task ended, as the host reported it."""

    exit_code: int | None = None  # as a shell says it: 128 + N for a death by signal N
    signal: int | None = None  # the signal that ended the process (e.g. 9), if one did
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None  # the host could not run the task at all
    data: Any = None  # a runner's structured result (e.g. final_results)


SIGKILL = 9  # the same on every platform phalanx runs on


def ended_by(outcome: Outcome) -> str:
    """How the task's process ended, as a reason reads it: `exit code 1`,
    `killed by signal 11 (SIGSEGV)`, or, for a process that was asked to
    end (a timeout, a cancel) and did not, `killed by SIGKILL after ignoring
    SIGTERM`."""
    if outcome.signal is None:
        return f"exit code {outcome.exit_code}"
    if outcome.signal == SIGKILL and (outcome.timed_out or outcome.cancelled):
        return "killed by SIGKILL after ignoring SIGTERM"
    return f"killed by signal {outcome.signal} ({_signal_name(outcome.signal)})"


def _signal_name(number: int) -> str:
    import signal  # only for a name, and only when a process died of one

    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"


T = TypeVar("T", bound=Task)


def to_json(task: Task) -> dict[str, Any]:
    """The task's fields as JSON-able values (tuples become lists on dumping)."""
    return {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}


def from_json(cls: type[T], data: Mapping[str, Any]) -> T:
    """`cls` from what `to_json` gave, after a trip through JSON: lists back
    into the tuples the fields declare. For the runner's own child process,
    which reads what its parent wrote; not a check of foreign input."""
    hints = typing.get_type_hints(cls)
    values = {
        f.name: _tupled(hints[f.name], data[f.name])
        for f in dataclasses.fields(cls)
        if f.name in data
    }
    return cls(**values)


def _tupled(hint: Any, value: Any) -> Any:
    if not isinstance(value, list):
        return value
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        return tuple(_tupled(inner, v) for v in value)
    for arg in typing.get_args(hint):  # X | None
        if typing.get_origin(arg) is tuple:
            return _tupled(arg, value)
    return value
