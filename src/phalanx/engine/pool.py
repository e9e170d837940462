"""The pool engine: independent single-host cases on N workers, each worker
taking the next case as soon as it is free.

It speaks the same contract as the lockstep engine (case kinds, host
sessions, events, results) and runs a case's stages with the same step
(engine.step), but has no barriers: a case's stages run one after another
on its worker's session, and cases run side by side. Suite
initialize/finalize do not exist here; a suite with them runs in lockstep.
Events of different cases interleave; each carries its case name, so sinks
keep every case's output apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from phalanx.engine import lifecycle, step
from phalanx.engine.session import HostSession, StageOrder
from phalanx.engine.step import Cancellation, scope_id, stage_id
from phalanx.events import CaseEnded, CaseRecord, Event, StageEnded, StageRecord, StageStarted, now
from phalanx.kinds import registry as kinds
from phalanx.kinds.base import CaseKind, StageContext
from phalanx.model import (
    Case,
    CaseHistory,
    CaseResult,
    HostResult,
    RunResult,
    StageResult,
    Status,
    Suite,
)


class Recorder(Protocol):
    """Where a case's operation records go, and its history once it is over
    (a tree run's: tree/histories.py). `index` is the case's in the run."""

    def env(self, index: int, path: str) -> dict[str, str]: ...

    def take(self, index: int, case: str) -> CaseHistory | None: ...


@dataclass
class Pool:
    suite: Suite
    sessions: Sequence[HostSession]  # one per worker, all for the suite's one host
    run_id: str
    emit: Callable[[Event], None]
    env: Mapping[str, str] = field(default_factory=dict)
    stop_on_error: bool = False
    # The edge's way to stop the run (`cancel`, `abort`): see step.Cancellation.
    cancellation: Cancellation = field(default_factory=Cancellation)
    histories: Recorder | None = None

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
            lifecycle.finish(
                result, self.emit, empty=Status.SKIPPED, cancelled=self.cancellation.reason
            )
        return result

    def cancel(self, reason: str) -> None:
        """Stop the run, keeping the running cases' finalizes (see step.Cancellation)."""
        self.cancellation.cancel(reason)

    def abort(self, reason: str) -> None:
        """Stop the run, finalizes included."""
        self.cancellation.abort(reason)

    async def _worker(
        self, session: HostSession, work: Iterator[tuple[int, tuple[Case, CaseResult]]]
    ) -> None:
        # One shared iterator: next() never awaits, so two workers never take the same case.
        for index, (case, case_result) in work:
            if self.cancellation.requested:
                return  # the cases not started end as cancelled (lifecycle.finish)
            if self.stopped_by is not None:
                case_result.status = Status.SKIPPED
                case_result.reason = f"not run: --stop-on-error after {self.stopped_by}"
                case_result.ended_at = now()
                self.emit(CaseEnded(CaseRecord.of(case_result)))
                continue
            await self._case(session, case, case_result, index)
            if self.stop_on_error and case_result.status not in (Status.PASSED, Status.SKIPPED):
                self.stopped_by = self.stopped_by or f"{case.name} {case_result.status}"

    async def _case(self, session: HostSession, case: Case, result: CaseResult, index: int) -> None:
        kind = kinds.get(case.kind)

        async def run(stage: str) -> StageResult:
            return await self._stage(session, case, kind, stage, index)

        def skip(stage: str, reason: str, status: Status) -> StageResult:
            hosts = [HostResult(host=self.host.name, status=status, reason=reason)]
            skipped = StageResult(name=stage, status=status, hosts=hosts)
            self.emit(StageEnded(case.name, StageRecord.of(skipped)))
            return skipped

        await step.run_case(
            case,
            kind,
            result,
            run,
            skip,
            self.emit,
            empty=Status.SKIPPED,
            cancellation=self.cancellation,
            history=self._history(index, case.name),
        )

    def _history(self, index: int, case: str) -> Callable[[], CaseHistory | None] | None:
        recorder = self.histories
        if recorder is None:
            return None
        return lambda: recorder.take(index, case)

    async def _stage(
        self, session: HostSession, case: Case, kind: CaseKind, stage: str, index: int
    ) -> StageResult:
        context = StageContext(self.suite, case, stage, self.host, {})
        task = kind.task(context)
        result = StageResult(name=stage, status=Status.RUNNING, started_at=now())
        if task is None:
            result.status, result.ended_at = Status.SKIPPED, now()
            self.emit(StageEnded(case.name, StageRecord.of(result)))
            return result
        env = {**self.env, "PHALANX_STAGE": stage, "PHALANX_CASE": case.name}
        if self.histories is not None:
            env.update(self.histories.env(index, env.get("PATH", "")))
        order = StageOrder(
            stage_id(self.run_id, index, case.name, stage),
            self.host.name,
            task,
            env,
            self.suite.stage_timeout(case),
            case=case.name,
            stage=stage,
            scope=scope_id(self.run_id, index, case.name),
        )
        self.emit(StageStarted(case.name, stage, (self.host.name,)))
        host = await step.host_stage(session, order, kind, context, self.emit, self.cancellation)
        result.hosts = [host]
        result.status, result.ended_at = host.status, now()
        self.emit(StageEnded(case.name, StageRecord.of(result)))
        return result
