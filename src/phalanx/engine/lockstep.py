"""The lockstep state machine (DESIGN §2).

Suite initialize on every host → barrier; for each case: initialize →
barrier → run → barrier → finalize → barrier; suite finalize → barrier.
A failed suite initialize skips every case; a failed case initialize skips
that case's run; finalize always runs; a case failing never stops the suite.

The engine talks to hosts only through a `Fleet` of `HostSession`s and
reports everything as events. It does no I/O of its own. A host's part of a
stage, a case's walk through its stages and its reason are `engine.step`'s,
shared with the pool engine; what is lockstep's own is the barrier (every
host ends a stage before any starts the next), suite stages and log
collection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from phalanx.engine import lifecycle, step
from phalanx.engine.session import Fleet, StageOrder, StageScope
from phalanx.engine.step import SUITE_SCOPE, Cancellation, stage_id
from phalanx.events import (
    CaseEnded,
    CaseRecord,
    Event,
    RunEnded,
    RunRecord,
    StageEnded,
    StageRecord,
    StageStarted,
    now,
)
from phalanx.kinds import registry as kinds
from phalanx.kinds.base import CaseKind, StageContext
from phalanx.kinds.scripts import SCRIPTS
from phalanx.model import (
    Case,
    CaseResult,
    Host,
    HostResult,
    RunResult,
    StageResult,
    Status,
    Suite,
    worst,
)
from phalanx.tags import RunContext, environment, render, tag_values
from phalanx.tasks import Task


@dataclass
class Lockstep:
    suite: Suite
    fleet: Fleet
    run: RunContext
    emit: Callable[[Event], None]
    addresses: Mapping[str, str] = field(default_factory=dict)
    diskmounts: Mapping[str, str] = field(default_factory=dict)
    # The edge's way to stop the run (`cancel`, `abort`): see step.Cancellation.
    cancellation: Cancellation = field(default_factory=Cancellation)

    def __post_init__(self) -> None:
        self.tags = {
            host.name: tag_values(
                self.suite, host, self.run, self.addresses, self.diskmounts.get(host.name, "")
            )
            for host in self.suite.hosts
        }
        self.env = {name: environment(values) for name, values in self.tags.items()}
        self.result = lifecycle.new_result(
            self.run.run_id, self.suite, [h.name for h in self.suite.hosts]
        )

    async def execute(self) -> RunResult:
        result = self.result
        lifecycle.start(result, self.emit)
        try:
            await self._suite_body()
        finally:
            try:
                if self.suite.finalize is not None:
                    result.stages.append(await self._suite_finalize())
            finally:
                lifecycle.finish(result, self.emit, cancelled=self.cancellation.reason)
        return result

    def cancel(self, reason: str) -> None:
        """Stop the run, keeping its finalizes (see step.Cancellation)."""
        self.cancellation.cancel(reason)

    def abort(self, reason: str) -> None:
        """Stop the run, finalizes included."""
        self.cancellation.abort(reason)

    async def _suite_finalize(self) -> StageResult:
        if not self.cancellation.allows("finalize"):
            return self._skipped_stage(
                None, "finalize", SCRIPTS, self.cancellation.why("finalize"), Status.CANCELLED
            )
        return await self._stage(None, "finalize", SCRIPTS, 0)

    def fail_before_start(self, status: Status, reason: str) -> RunResult:
        """The run could not start (e.g. provisioning failed): nothing ran."""
        result = self.result
        result.started_at = result.started_at or now()
        for case in result.cases:
            case.status = Status.CANCELLED if status is Status.CANCELLED else Status.SKIPPED
            case.reason = reason
        result.status, result.reason = status, reason
        result.ended_at = now()
        self.emit(RunEnded(RunRecord.of(result)))
        return result

    async def _suite_body(self) -> None:
        result = self.result
        if self.suite.initialize is not None and self.cancellation.allows("initialize"):
            init = await self._stage(None, "initialize", SCRIPTS, 0)
            result.stages.append(init)
            if self.cancellation.requested:
                return  # the cases are the run's cancelled ones, not skipped
            if not init.status.ok:
                reason = f"suite initialize {init.status}: {step.who(init)}"
                result.reason = reason
                for skipped in result.cases:
                    skipped.status, skipped.reason = Status.SKIPPED, reason
                    self.emit(CaseEnded(CaseRecord.of(skipped)))
                return
        for index, (case, case_result) in enumerate(
            zip(self.suite.cases, result.cases, strict=True), start=1
        ):
            if self.cancellation.requested:
                return  # the cases not started end as cancelled (lifecycle.finish)
            await self._case(case, case_result, index)

    async def _case(self, case: Case, result: CaseResult, index: int) -> None:
        kind = kinds.get(case.kind)

        async def run(stage: str) -> StageResult:
            return await self._stage(case, stage, kind, index)

        def skip(stage: str, reason: str, status: Status) -> StageResult:
            return self._skipped_stage(case, stage, kind, reason, status)

        self.fleet.begin_case(case.name, step.scope_id(self.run.run_id, index, case.name))
        try:
            await step.run_case(
                case,
                kind,
                result,
                run,
                skip,
                self.emit,
                cancellation=self.cancellation,
                history=lambda: self.fleet.history(case.name),
            )
        finally:
            # What the case's stages left running (a server its initialize
            # started) ends with it, on every host.
            self.fleet.end_scope(step.scope_id(self.run.run_id, index, case.name))

    def _skipped_stage(
        self, case: Case | None, stage: str, kind: CaseKind, reason: str, status: Status
    ) -> StageResult:
        hosts = [
            HostResult(host=h.name, status=status, reason=reason)
            for h in self.suite.hosts
            if self._task(case, stage, kind, h) is not None
        ]
        result = StageResult(name=stage, status=status if hosts else Status.SKIPPED, hosts=hosts)
        self.emit(StageEnded(case.name if case is not None else None, StageRecord.of(result)))
        return result

    def _context(self, case: Case | None, stage: str, host: Host) -> StageContext:
        return StageContext(self.suite, case, stage, host, self.tags[host.name])

    def _task(self, case: Case | None, stage: str, kind: CaseKind, host: Host) -> Task | None:
        return kind.task(self._context(case, stage, host))

    async def _stage(
        self, case: Case | None, stage: str, kind: CaseKind, index: int
    ) -> StageResult:
        case_name = case.name if case is not None else None
        sid = stage_id(self.run.run_id, index, case_name, stage)
        scope = step.scope_id(self.run.run_id, index, case_name)
        timeout = self.suite.stage_timeout(case)
        orders: list[tuple[Host, StageOrder]] = []
        for host in self.suite.hosts:
            task = self._task(case, stage, kind, host)
            if task is not None:
                env = {
                    **self.env[host.name],
                    "PHALANX_STAGE": stage,
                    "PHALANX_CASE": case_name or "",
                }
                logs = tuple(self._render(path, host) for path in self.suite.logs)
                orders.append(
                    (
                        host,
                        StageOrder(
                            sid,
                            host.name,
                            task,
                            env,
                            timeout,
                            logs,
                            case=case_name,
                            stage=stage,
                            scope=scope,
                        ),
                    )
                )
        result = StageResult(name=stage, status=Status.RUNNING, started_at=now())
        if not orders:
            result.status, result.ended_at = Status.SKIPPED, now()
            self.emit(StageEnded(case_name, StageRecord.of(result)))
            return result
        self.fleet.begin_stage(
            StageScope(
                sid,
                frozenset(h.name for h, _ in orders),
                f"{index}:{case_name or SUITE_SCOPE}",
                case=case_name,
                stage=stage,
            )
        )
        self.emit(StageStarted(case_name, stage, tuple(h.name for h, _ in orders)))
        nemesis: AbstractAsyncContextManager[None] = contextlib.nullcontext()
        if case is not None and case.nemesis is not None and stage == "run":
            names = [h.name for h, _ in orders]
            nemesis = self.fleet.nemesis(case.name, names, case.nemesis, timeout)
        try:
            async with nemesis:
                # The barrier: the stage ends when every host has ended it.
                hosts = await step.every_host(
                    step.host_stage(
                        self.fleet.session(host.name),
                        order,
                        kind,
                        self._context(case, stage, host),
                        self.emit,
                        self.cancellation,
                    )
                    for host, order in orders
                )
        finally:
            self.fleet.end_stage(sid)
        result.hosts = list(hosts)
        if self.suite.logs:
            result.hosts = await step.every_host(
                step.collect_logs(self.fleet.session(h.host), case_name, stage, sid, h, self.emit)
                for h in result.hosts
            )
        result.status = worst([h.status for h in result.hosts])
        result.ended_at = now()
        self.emit(StageEnded(case_name, StageRecord.of(result)))
        return result

    def _render(self, text: str, host: Host) -> str:
        return render(text, self.tags[host.name])
