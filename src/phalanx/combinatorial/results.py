"""What a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phalanx.combinatorial.walk import Walk


def place_of(exc: BaseException) -> str:
    """Where `exc` was raised: the innermost frame of its traceback, as
    `file.py:function:line`. The file's name only: a shipped action module
    sits in a different folder on every worker."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{Path(code.co_filename).name}:{code.co_name}:{tb.tb_lineno}"


@dataclass(frozen=True)
class Failure:
    """One failed walk: where it failed and with what."""

    walk_id: int
    error_type: str  # e.g. "builtins.ValueError"
    action_class: str  # "module:QualName" of the failing action; "" if not known
    action: str  # the failing action with its parameter, e.g. "Resize(3)"
    message: str
    traceback: str | None  # kept for the first few failures of each task
    segment: int
    place: str = ""  # where it was raised: `file.py:function:line` (place_of)

    @property
    def signature(self) -> tuple[str, str, str]:
        """Failures with the same signature fail "the same way": the same
        exception type raised by the same action at the same line (two
        assertions of one action are two failures)."""
        return (self.error_type, self.action_class, self.place)

    def __str__(self) -> str:
        short = self.error_type.rpartition(".")[2]
        where = f" at {self.action}" if self.action else ""
        return f"walk {self.walk_id} failed{where}: {short}: {self.message}"


@dataclass(frozen=True)
class Shrunk:
    """A failure reduced to a minimal walk that still fails the same way."""

    signature: tuple[str, str, str]
    from_walk_id: int
    original_length: int
    walk: Walk  # the minimal walk; replay it with replay_walk
    message: str  # the minimal walk's error message
    reproduced: bool  # False: the original walk did not fail alone; nothing was shrunk
    tries: int  # candidate walks run
    trace_id: int | None = None  # its walk id in the trace, for `phalanx replay`

    def __str__(self) -> str:
        short = self.signature[0].rpartition(".")[2]
        if not self.reproduced:
            return (
                f"{short} of walk {self.from_walk_id} does not happen when the walk runs alone "
                "(it depends on other walks or on timing); not shrunk"
            )
        steps = " -> ".join(repr(a) for a in self.walk)
        where = f" (trace walk {self.trace_id})" if self.trace_id is not None else ""
        return (
            f"{short} of walk {self.from_walk_id} ({self.original_length} actions) shrunk to "
            f"{len(self.walk)}{where}: {steps}: {self.message}"
        )


@dataclass(frozen=True)
class RunLogs:
    trace: Path  # JSON lines: one line per walk segment, replayable by walk id
    log: Path  # the run's log records


@dataclass
class Results:
    walk_count: int  # walks that ran (pruned walks excluded)
    segment_count: int  # walk segments that ran
    error_count: int
    cancel_count: int
    elapsed: float
    states: list[Any]  # gathered final states, in walk id order (empty unless gather_states)
    logs: RunLogs | None
    failed_tests: list[int]  # walk ids, ascending
    shrunk: list[Shrunk] = field(default_factory=list)
    pruned_count: int = 0
    failures: list[Failure] = field(default_factory=list)  # by walk id
    cancelled_tests: list[int] = field(default_factory=list)
    state_ids: list[int] = field(default_factory=list)  # walk id of each gathered state
    # The worker ("host:pid") that ran each gathered state's last segment;
    # "coordinator" where a serial action ended the walk before any worker did.
    state_workers: list[str] = field(default_factory=list)
    strategy: str = "product"
    seed: int | None = None
    executor: str = "local"

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    @property
    def states_by_id(self) -> dict[int, Any]:
        return dict(zip(self.state_ids, self.states, strict=True))

    def summary(self) -> str:
        rate = self.walk_count / self.elapsed if self.elapsed > 0 else 0.0
        parts = [
            f"{self.walk_count} walks ({self.segment_count} segments) in {self.elapsed:.2f}s",
            f"{rate:,.0f} walks/s",
            f"{self.error_count} failed",
            f"{self.cancel_count} cancelled",
        ]
        if self.pruned_count:
            parts.append(f"{self.pruned_count} pruned")
        return ", ".join(parts)
