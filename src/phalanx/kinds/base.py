"""The contract between the engine and a case kind.

The engine walks stages and barriers; a kind says, for one case, one stage
and one host, what that host runs (a `Task`, which crosses the wire as JSON)
and how the host's outcome is judged. A new kind plugs in by registering a
`CaseKind`; neither the engine nor the loader changes: the loader hands the
kind a case's own keys (`prepare`) and stores what the kind makes of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from phalanx.model import CASE_STAGES, Case, Host, Script, Status, Suite
from phalanx.tasks import Outcome, Task, ended_by
from phalanx.tasks.base import SIGKILL


class OptionError(ValueError):
    """A case's kind-specific key is wrong; `path` leads to it (`order`, 2)."""

    def __init__(self, message: str, *path: str | int) -> None:
        super().__init__(message)
        self.path = path


class ReadError(Exception):
    """A module a case names cannot be read (missing, unreadable)."""


@dataclass(frozen=True)
class CaseSpec:
    """One case as the loader found it, for its kind to check."""

    name: str
    options: Mapping[str, Any]  # the case's keys that are the kind's, as written
    stages: Mapping[str, Script]  # the stage scripts found (given or in the folder)
    folder: Path  # the case's own folder (tc/<name>)
    has_folder: bool  # whether that folder exists
    search: tuple[Path, ...]  # where the modules it names are looked for, in order
    # Module name -> its source, from the first of `search` that has it; raises
    # ReadError. The loader's reader: a kind itself reads no files.
    read_module: Callable[[str], str]


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

    def prepare(self, spec: CaseSpec) -> dict[str, Any]:
        """The case's options, checked and completed (e.g. with the module
        sources a host needs): they become `Case.options`. Raises
        OptionError naming the key at fault."""
        ...

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
        return Status.TIMEOUT, "stage timed out; its process group was killed" + killed_how(outcome)
    if outcome.cancelled:
        return Status.CANCELLED, "cancelled"
    if outcome.exit_code == 0:
        return Status.PASSED, None
    return Status.FAILED, ended_by(outcome)


def killed_how(outcome: Outcome) -> str:
    """` (killed by SIGKILL after ignoring SIGTERM)` for a stage that was
    stopped and needed more than SIGTERM; nothing otherwise."""
    return f" ({ended_by(outcome)})" if outcome.signal == SIGKILL else ""


DEFAULT_CASE_STAGES = CASE_STAGES
