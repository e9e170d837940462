"""What a host is asked to run for one stage, and how that ended.

Both cross between the coordinator and a host: a `Task` goes out (inside a
`stage.start`, or straight to an in-process session), an `Outcome` comes
back. The case kind makes the task and judges the outcome; the host's runner
turns one into the other. One type each, on both sides of the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Task:
    """What one host runs for one stage. `type` names the host-side runner."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How a host's task ended, as the host reported it."""

    exit_code: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None  # the host could not run the task at all
    data: Any = None  # a runner's structured result (e.g. final_results)
