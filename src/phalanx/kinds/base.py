"""The contract between the engine and a case kind.

The engine walks stages and barriers; a kind says, for one case, one stage
and one host, what that host runs (a `Task`, which crosses the wire as JSON)
and how the host's outcome is judged. A new kind plugs in by registering a
`CaseKind`; the engine does not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from phalanx.model import CASE_STAGES, Case, Host, Status, Suite
from phalanx.tasks import Outcome, Task


@dataclass(frozen=True)
class StageContext:
    suite: Suite
    case: Case | None  # None: a suite stage
    stage: str
    host: Host
    tags: Mapping[str, str]  # @tag@ values for this host


class CaseKind(Protocol):
    name: str
    # Keys a case of this kind may carry besides the common ones; the loader
    # moves them into `Case.options` and rejects any other.
    options: frozenset[str]

    def stages(self, case: Case) -> tuple[str, ...]:
        """The stages this case has, in order."""
        ...

    def task(self, ctx: StageContext) -> Task | None:
        """What `ctx.host` runs in `ctx.stage`; None: the host sits this stage out."""
        ...

    def judge(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        """The host's status for the stage, and a reason where it did not pass."""
        ...


def judge_exit(outcome: Outcome) -> tuple[Status, str | None]:
    """The common rule: exit code 0 passes; anything else says why not."""
    if outcome.error is not None:
        return Status.ERROR, outcome.error
    if outcome.timed_out:
        return Status.TIMEOUT, "stage timed out; its process group was killed"
    if outcome.cancelled:
        return Status.CANCELLED, "cancelled"
    if outcome.exit_code == 0:
        return Status.PASSED, None
    return Status.FAILED, f"exit code {outcome.exit_code}"


DEFAULT_CASE_STAGES = CASE_STAGES
