"""Tree tests as case kinds: `executable` (a `run-test` program, any
language) and `declarative` (a `test-config.yaml` with `test-modules:`, run by
phalanx's own test object). One stage, `run`; exit code 0 passes, an
expected failure inverts that, an unmet dependency or `skip:` skips with the
reason named.
"""

from __future__ import annotations

from typing import Any

from phalanx.kinds import checks
from phalanx.kinds.base import CaseSpec, OptionError, StageContext, killed_how, timed_out
from phalanx.model import Case, Status
from phalanx.tasks import ExecutableTask, Outcome, Task, ended_by

STAGES = ("run",)
OPTIONS = frozenset(
    {"dir", "cwd", "skip", "dependencies", "expected_fail", "inactivity", "env", "checks"}
)


class Executable:
    options: frozenset[str] = OPTIONS

    def __init__(self, name: str, declarative: bool) -> None:
        self.name = name
        self.declarative = declarative

    def stages(self, case: Case) -> tuple[str, ...]:
        return STAGES

    def prepare(self, spec: CaseSpec) -> dict[str, Any]:
        """The options as the tree loader makes them (a suite may name the
        kind too): `dir` the test's folder, `dependencies` [kind, name] pairs."""
        opts = spec.options
        checks.text(opts, "dir", required=True)
        checks.text(opts, "cwd")
        checks.text(opts, "skip")
        checks.boolean(opts, "expected_fail")
        checks.number(opts, "inactivity", above=True)
        needs = opts.get("dependencies") or []
        if not isinstance(needs, list | tuple):
            raise OptionError("must be a list of (kind, name) pairs", "dependencies")
        for index, need in enumerate(needs):
            pair = isinstance(need, list | tuple) and len(need) == 2
            if not pair or not all(isinstance(part, str) and part for part in need):
                raise OptionError(
                    f"must be a (kind, name) pair, not {need!r}", "dependencies", index
                )
        for key in ("env", "checks"):
            given = opts.get(key) or {}
            if not isinstance(given, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in given.items()
            ):
                raise OptionError("must be a mapping of names to text", key)
        return dict(opts)

    def task(self, ctx: StageContext) -> Task | None:
        case = ctx.case
        if case is None or ctx.stage != "run":
            return None
        options = case.options
        given = {k: options[k] for k in ("cwd", "skip", "inactivity") if options.get(k) is not None}
        return ExecutableTask(
            name=case.name,
            dir=options["dir"],
            dependencies=tuple((kind, name) for kind, name in options.get("dependencies") or ()),
            declarative=self.declarative,
            env=tuple(sorted((options.get("env") or {}).items())),
            checks=tuple(sorted((options.get("checks") or {}).items())),
            **given,
        )

    def judge(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        data = outcome.data if isinstance(outcome.data, dict) else {}
        if "skipped" in data:
            return Status.SKIPPED, str(data["skipped"])
        if outcome.error is not None:
            return Status.ERROR, outcome.error
        if outcome.timed_out:
            why = data.get("timeout") or timed_out(ctx)
            return Status.TIMEOUT, str(why) + killed_how(outcome)
        if outcome.cancelled:
            return Status.CANCELLED, "cancelled"
        expected_fail = bool(ctx.case is not None and ctx.case.options.get("expected_fail"))
        if outcome.exit_code == 0:
            if expected_fail:
                return Status.FAILED, "expected to fail, but exited 0"
            return Status.PASSED, None
        if expected_fail:
            return Status.PASSED, f"failed as expected ({ended_by(outcome)})"
        return Status.FAILED, ended_by(outcome)


EXECUTABLE = Executable("executable", declarative=False)
DECLARATIVE = Executable("declarative", declarative=True)
