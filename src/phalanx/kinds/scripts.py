"""Shell stage scripts (the XrdTest kind): each stage is a script, run on
every host of the case's roles after its @tags@ are substituted; exit code 0
passes. Suite initialize and finalize are always of this kind, and so are a
case's initialize and finalize in kinds that only bring their own `run`
(`OwnRun`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from phalanx.kinds.base import DEFAULT_CASE_STAGES, CaseSpec, OptionError, StageContext, judge_exit
from phalanx.model import CASE_STAGES, Case, Host, Script, Status
from phalanx.tags import render, xrdtest_sources
from phalanx.tasks import Outcome, ShellTask, Task


def takes_part(case: Case | None, host: Host) -> bool:
    """A case with roles runs on the hosts that have one of them."""
    return case is None or not case.roles or bool(set(case.roles) & set(host.roles))


class Scripts:
    name = "scripts"
    options: frozenset[str] = frozenset()

    def prepare(self, spec: CaseSpec) -> dict[str, Any]:
        if "run" not in spec.stages:
            if not spec.has_folder:
                raise OptionError(f"case {spec.name!r} has no folder {spec.folder}")
            raise OptionError(f"case {spec.name!r} has no run script ({spec.folder}/run.sh)")
        return dict(spec.options)

    def stages(self, case: Case) -> tuple[str, ...]:
        return tuple(s for s in DEFAULT_CASE_STAGES if s in case.stages)

    def script(self, ctx: StageContext) -> Script | None:
        if ctx.case is None:
            script: Script | None = getattr(ctx.suite, ctx.stage)
            return script
        return ctx.case.stages.get(ctx.stage)

    def task(self, ctx: StageContext) -> Task | None:
        script = self.script(ctx)
        if script is None or not takes_part(ctx.case, ctx.host):
            return None
        text = render(script.text, ctx.tags)
        if ctx.suite.xrdtest:
            text = xrdtest_sources(text)
        if ctx.suite.shell is None:
            return ShellTask(script=text, origin=script.origin)
        return ShellTask(script=text, origin=script.origin, shell=ctx.suite.shell)

    def judge(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        return judge_exit(outcome, ctx)


SCRIPTS = Scripts()


class OwnRun(ABC):
    """A kind that brings its own `run` stage (a Python test, walks); the
    case's scripts, when it has them, run its initialize and finalize."""

    def stages(self, case: Case) -> tuple[str, ...]:
        return tuple(s for s in CASE_STAGES if s == "run" or s in case.stages)

    def task(self, ctx: StageContext) -> Task | None:
        if ctx.case is None or ctx.stage != "run":
            return SCRIPTS.task(ctx)
        return self.run_task(ctx, ctx.case)

    def judge(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        if ctx.stage != "run":
            return SCRIPTS.judge(ctx, outcome)
        return self.judge_run(ctx, outcome)

    @abstractmethod
    def run_task(self, ctx: StageContext, case: Case) -> Task | None:
        """The `run` stage's task on `ctx.host`, or None where it does not run."""

    @abstractmethod
    def judge_run(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]: ...
