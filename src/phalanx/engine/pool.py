"""The pool engine: independent single-host cases on N workers, each worker
taking the next case as soon as it is free.

It speaks the same contract as the lockstep engine (case kinds, host
sessions, events, results) but has no barriers: a case's stages run one
after another on its worker's session, and cases run side by side. Suite
initialize/finalize do not exist here; a suite with them runs in lockstep.
Events of different cases interleave; each carries its case name, so sinks
keep every case's output apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from phalanx import layout
from phalanx.engine import lifecycle
from phalanx.engine.session import HostSession, StageOrder
from phalanx.events import (
    CaseEnded,
    Event,
    HostOutput,
    HostStageEnded,
    StageEnded,
    StageStarted,
    now,
)
from phalanx.kinds import registry as kinds
from phalanx.kinds.base import StageContext
from phalanx.model import Case, CaseResult, HostResult, RunResult, StageResult, Status, Suite, worst


@dataclass
class Pool:
    suite: Suite
    sessions: Sequence[HostSession]  # one per worker, all for the suite's one host
    run_id: str
    emit: Callable[[Event], None]
    env: Mapping[str, str] = field(default_factory=dict)
    stop_on_error: bool = False

    def __post_init__(self) -> None:
        if self.suite.initialize is not None or self.suite.finalize is not None:
            raise ValueError("the pool engine runs cases only; suite stages need lockstep")
        if len(self.suite.hosts) != 1:
            raise ValueError("the pool engine runs single-host suites")
        if not self.sessions:
            raise ValueError("the pool engine needs at least one worker")
        self.host = self.suite.hosts[0]
        self.result = lifecycle.new_result(self.run_id, self.suite, [self.host.name])
        self.stopped_by: str | None = None

    async def execute(self) -> RunResult:
        result = self.result
        lifecycle.start(result, self.emit)
        work = iter(enumerate(zip(self.suite.cases, result.cases, strict=True), start=1))
        try:
            await asyncio.gather(*(self._worker(s, work) for s in self.sessions))
        finally:
            if self.stopped_by is not None:
                result.reason = f"stopped after {self.stopped_by} (--stop-on-error)"
            lifecycle.finish(result, self.emit, empty=Status.SKIPPED)
        return result

    async def _worker(
        self, session: HostSession, work: Iterator[tuple[int, tuple[Case, CaseResult]]]
    ) -> None:
        # One shared iterator: next() never awaits, so two workers never take the same case.
        for index, (case, case_result) in work:
            if self.stopped_by is not None:
                case_result.status = Status.SKIPPED
                case_result.reason = f"not run: --stop-on-error after {self.stopped_by}"
                case_result.ended_at = now()
                self.emit(CaseEnded(case_result))
                continue
            await self._case(session, case, case_result, index)
            if self.stop_on_error and case_result.status not in (Status.PASSED, Status.SKIPPED):
                self.stopped_by = self.stopped_by or f"{case.name} {case_result.status}"

    async def _case(self, session: HostSession, case: Case, result: CaseResult, index: int) -> None:
        result.started_at = now()
        result.status = Status.RUNNING
        kind = kinds.get(case.kind)
        for stage in kind.stages(case):
            result.stages.append(await self._stage(session, case, stage, index))
        result.status = worst([s.status for s in result.stages], empty=Status.SKIPPED)
        reasons = [h.reason for s in result.stages for h in s.hosts if h.reason]
        result.reason = "; ".join(reasons) or None
        result.ended_at = now()
        self.emit(CaseEnded(result))

    async def _stage(self, session: HostSession, case: Case, stage: str, index: int) -> StageResult:
        kind = kinds.get(case.kind)
        context = StageContext(self.suite, case, stage, self.host, {})
        task = kind.task(context)
        result = StageResult(name=stage, status=Status.RUNNING, started_at=now())
        if task is None:
            result.status, result.ended_at = Status.SKIPPED, now()
            self.emit(StageEnded(case.name, result))
            return result
        host = HostResult(host=self.host.name, status=Status.RUNNING)
        result.hosts = [host]
        stage_id = f"{self.run_id}:{index}:{case.name}:{stage}"
        env = {**self.env, "PHALANX_STAGE": stage, "PHALANX_CASE": case.name}
        order = StageOrder(stage_id, self.host.name, task, env, self.suite.stage_timeout(case))
        self.emit(StageStarted(case.name, stage, (self.host.name,)))

        def on_output(text: str) -> None:
            if host.output is None:  # a test that prints nothing has no output file
                host.output = layout.output_path(case.name, stage, self.host.name)
            self.emit(HostOutput(case.name, stage, self.host.name, text))

        host.started_at = now()
        report = await session.run_stage(order, on_output)
        host.status, host.reason = kind.judge(context, report.outcome)
        host.exit_code = report.outcome.exit_code
        host.started_at, host.ended_at = report.started_at, report.ended_at
        if host.status is not Status.SKIPPED:
            host.data = report.outcome.data
        self.emit(HostStageEnded(case.name, stage, host))
        result.status, result.ended_at = host.status, now()
        self.emit(StageEnded(case.name, result))
        return result
