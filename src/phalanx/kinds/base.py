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

from phalanx.model import CASE_STAGES, DEFAULT_STAGE_TIMEOUT, Case, Host, Script, Status, Suite
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


def judge_exit(outcome: Outcome, ctx: StageContext | None = None) -> tuple[Status, str | None]:
    """The common rule: exit code 0 passes; anything else says why not."""
    if outcome.error is not None:
        return Status.ERROR, outcome.error
    if outcome.timed_out:
        return Status.TIMEOUT, timed_out(ctx) + killed_how(outcome)
    if outcome.cancelled:
        return Status.CANCELLED, "cancelled"
    if outcome.exit_code == 0:
        return Status.PASSED, None
    return Status.FAILED, ended_by(outcome)


def timed_out(ctx: StageContext | None) -> str:
    """`timed out after 3 s (case `slow`'s timeout)`: the limit and where it
    was set, so that a reader knows which number to change."""
    if ctx is None:
        return "timed out; its process group was killed"
    limit = ctx.suite.stage_timeout(ctx.case)
    if ctx.case is not None and ctx.case.timeout is not None:
        source = f"case `{ctx.case.name}`'s timeout"
    elif ctx.suite.timeout == DEFAULT_STAGE_TIMEOUT:
        source = "the default stage timeout"
    else:
        source = f"suite `{ctx.suite.name}`'s timeout"
    return f"timed out after {limit:g} s ({source}); its process group was killed"


def killed_how(outcome: Outcome) -> str:
    """` (killed by SIGKILL after ignoring SIGTERM)` for a stage that was
    stopped and needed more than SIGTERM; nothing otherwise."""
    return f" ({ended_by(outcome)})" if outcome.signal == SIGKILL else ""


DEFAULT_CASE_STAGES = CASE_STAGES
