"""Tree tests as case kinds: `executable` (a `run-test` program, any
language) and `declarative` (a `test-config.yaml` with `test-modules:`, run by
phalanx's own test object). One stage, `run`; exit code 0 passes, an
expected failure inverts that, an unmet dependency or `skip:` skips with the
reason named.
"""

from __future__ import annotations

from phalanx.kinds.base import StageContext
from phalanx.model import Case, Status
from phalanx.tasks import Outcome, Task

STAGES = ("run",)
OPTIONS = frozenset({"dir", "cwd", "skip", "dependencies", "expected_fail", "inactivity"})


class Executable:
    options: frozenset[str] = OPTIONS

    def __init__(self, name: str, declarative: bool) -> None:
        self.name = name
        self.declarative = declarative

    def stages(self, case: Case) -> tuple[str, ...]:
        return STAGES

    def task(self, ctx: StageContext) -> Task | None:
        case = ctx.case
        if case is None or ctx.stage != "run":
            return None
        options = case.options
        return Task(
            "executable",
            {
                "name": case.name,
                "dir": options["dir"],
                "cwd": options.get("cwd"),
                "skip": options.get("skip"),
                "dependencies": options.get("dependencies") or [],
                "inactivity": options.get("inactivity"),
                "declarative": self.declarative,
            },
        )

    def judge(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        data = outcome.data if isinstance(outcome.data, dict) else {}
        if "skipped" in data:
            return Status.SKIPPED, str(data["skipped"])
        if outcome.error is not None:
            return Status.ERROR, outcome.error
        if outcome.timed_out:
            why = data.get("timeout") or "timed out; its process group was killed"
            return Status.TIMEOUT, str(why)
        if outcome.cancelled:
            return Status.CANCELLED, "cancelled"
        expected_fail = bool(ctx.case is not None and ctx.case.options.get("expected_fail"))
        if outcome.exit_code == 0:
            if expected_fail:
                return Status.FAILED, "expected to fail, but exited 0"
            return Status.PASSED, None
        if expected_fail:
            return Status.PASSED, f"failed as expected (exit code {outcome.exit_code})"
        return Status.FAILED, f"exit code {outcome.exit_code}"


EXECUTABLE = Executable("executable", declarative=False)
DECLARATIVE = Executable("declarative", declarative=True)
