"""The small interface through which the engine talks to hosts.

The engine never sees a socket: it hands a `StageOrder` to a host's session
and gets back a `StageReport`. The coordinator's agent links implement it;
tests can implement it with anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from phalanx.model import CaseHistory, Nemesis
from phalanx.tasks import Outcome, Task


@dataclass(frozen=True)
class StageOrder:
    """One host's part of one stage. `stage_id` is opaque (unique in the
    run; results are applied once per (stage_id, host)): whoever needs the
    case or the stage reads them here, never out of the id."""

    stage_id: str
    host: str
    task: Task
    env: dict[str, str]
    timeout: float
    logs: tuple[str, ...] = ()
    case: str | None = None  # None: the suite's own stages
    stage: str = ""
    scope: str = ""  # the case in its run (`step.scope_id`): what ends its leftovers


@dataclass(frozen=True)
class StageReport:
    outcome: Outcome
    started_at: datetime
    ended_at: datetime


@dataclass(frozen=True)
class CollectedLog:
    path: str  # as named on the host
    content: bytes = b""
    truncated: bool = False
    missing: bool = False


@dataclass(frozen=True)
class StageScope:
    """Who takes part in a stage, and which key/value space its
    `phalanx-send`/`phalanx-wait` use (one per case, one for the suite)."""

    stage_id: str
    hosts: frozenset[str]
    kv_scope: str
    extra: dict[str, str] = field(default_factory=dict)
    case: str | None = None  # None: the suite's own stages
    stage: str = ""


class HostSession(Protocol):
    name: str

    async def run_stage(self, order: StageOrder, on_output: Callable[[bytes], None]) -> StageReport:
        """Run one stage (`on_output` gets the bytes it printed, as they come); never raises for a host problem: a lost agent is an
        Outcome with an error."""
        ...

    async def collect_logs(self, stage_id: str) -> list[CollectedLog]: ...

    def cancel(self, stage_id: str) -> None:
        """Stop the stage if it runs (its whole process group); its
        `run_stage` then returns a cancelled outcome. A no-op otherwise."""
        ...


class Fleet(Protocol):
    """The hosts of a run, as the engine sees them."""

    def session(self, host: str) -> HostSession: ...

    def begin_case(self, case: str, scope: str) -> None:
        """A case of the run begins (`scope`: `step.scope_id`); its stages
        follow, then `end_scope(scope)`. The suite's own stages are in no case."""
        ...

    def begin_stage(self, scope: StageScope) -> None: ...

    def end_stage(self, stage_id: str) -> None: ...

    def end_scope(self, scope: str) -> None:
        """A case is over (`step.scope_id`): its hosts end whatever its
        stages left running before they start another stage."""
        ...

    def history(self, case: str) -> CaseHistory | None:
        """What the case's clients recorded on all its hosts, on one clock
        (None: nothing), taken once the case's stages are over."""
        ...

    def nemesis(
        self, case: str, hosts: Sequence[str], spec: Nemesis, duration: float
    ) -> AbstractAsyncContextManager[None]:
        """Faults between `hosts` on the nemesis's schedule while the body
        runs (the case's run stage, at most `duration` seconds); all healed
        and resumed when it ends. What went wrong is in the case's history."""
        ...
