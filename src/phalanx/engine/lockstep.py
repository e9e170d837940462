"""The lockstep state machine (DESIGN §2).

Suite initialize on every host → barrier; for each case: initialize →
barrier → run → barrier → finalize → barrier; suite finalize → barrier.
A failed suite initialize skips every case; a failed case initialize skips
that case's run; finalize always runs; a case failing never stops the suite.

The engine talks to hosts only through a `Fleet` of `HostSession`s and
reports everything as events. It does no I/O of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from phalanx import layout
from phalanx.engine import lifecycle
from phalanx.engine.session import Fleet, StageOrder, StageScope
from phalanx.events import (
    CaseEnded,
    Event,
    HostLogs,
    HostOutput,
    HostStageEnded,
    RunEnded,
    StageEnded,
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

SUITE_SCOPE = "suite"


@dataclass
class Lockstep:
    suite: Suite
    fleet: Fleet
    run: RunContext
    emit: Callable[[Event], None]
    addresses: Mapping[str, str] = field(default_factory=dict)
    diskmounts: Mapping[str, str] = field(default_factory=dict)

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
            if self.suite.finalize is not None:
                result.stages.append(await self._stage(None, "finalize", SCRIPTS, 0))
            lifecycle.finish(result, self.emit)
        return result

    def fail_before_start(self, status: Status, reason: str) -> RunResult:
        """The run could not start (e.g. provisioning failed): nothing ran."""
        result = self.result
        result.started_at = result.started_at or now()
        for case in result.cases:
            case.status, case.reason = Status.SKIPPED, reason
        result.status, result.reason = status, reason
        result.ended_at = now()
        self.emit(RunEnded(result))
        return result

    async def _suite_body(self) -> None:
        result = self.result
        if self.suite.initialize is not None:
            init = await self._stage(None, "initialize", SCRIPTS, 0)
            result.stages.append(init)
            if not init.status.ok:
                reason = f"suite initialize {init.status}: {_who(init)}"
                result.reason = reason
                for skipped in result.cases:
                    skipped.status, skipped.reason = Status.SKIPPED, reason
                    self.emit(CaseEnded(skipped))
                return
        for index, (case, case_result) in enumerate(
            zip(self.suite.cases, result.cases, strict=True), start=1
        ):
            await self._case(case, case_result, index)

    async def _case(self, case: Case, result: CaseResult, index: int) -> None:
        result.started_at = now()
        result.status = Status.RUNNING
        kind = kinds.get(case.kind)
        initialized = True
        for stage in kind.stages(case):
            if stage == "run" and not initialized:
                result.stages.append(
                    self._skipped_stage(case, stage, kind, "case initialize did not pass")
                )
                continue
            stage_result = await self._stage(case, stage, kind, index)
            result.stages.append(stage_result)
            if stage == "initialize" and not stage_result.status.ok:
                initialized = False
                result.reason = f"initialize {stage_result.status}: {_who(stage_result)}"
        result.status = worst([s.status for s in result.stages])
        if result.status is not Status.PASSED and result.reason is None:
            failing = [s for s in result.stages if not s.status.ok]
            result.reason = "; ".join(f"{s.name} {s.status}: {_who(s)}" for s in failing) or None
        result.ended_at = now()
        self.emit(CaseEnded(result))

    def _skipped_stage(self, case: Case, stage: str, kind: CaseKind, reason: str) -> StageResult:
        hosts = [
            HostResult(host=h.name, status=Status.SKIPPED, reason=reason)
            for h in self.suite.hosts
            if self._task(case, stage, kind, h) is not None
        ]
        result = StageResult(name=stage, status=Status.SKIPPED, hosts=hosts)
        self.emit(StageEnded(case.name, result))
        return result

    def _context(self, case: Case | None, stage: str, host: Host) -> StageContext:
        return StageContext(self.suite, case, stage, host, self.tags[host.name])

    def _task(self, case: Case | None, stage: str, kind: CaseKind, host: Host) -> Task | None:
        return kind.task(self._context(case, stage, host))

    async def _stage(
        self, case: Case | None, stage: str, kind: CaseKind, index: int
    ) -> StageResult:
        case_name = case.name if case is not None else None
        stage_id = f"{self.run.run_id}:{index}:{case_name or SUITE_SCOPE}:{stage}"
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
                orders.append((host, StageOrder(stage_id, host.name, task, env, timeout, logs)))
        result = StageResult(name=stage, status=Status.RUNNING, started_at=now())
        result.hosts = [HostResult(host=host.name, status=Status.RUNNING) for host, _ in orders]
        if not orders:
            result.status, result.ended_at = Status.SKIPPED, now()
            self.emit(StageEnded(case_name, result))
            return result
        self.fleet.begin_stage(
            StageScope(
                stage_id,
                frozenset(h.name for h, _ in orders),
                f"{index}:{case_name or SUITE_SCOPE}",
            )
        )
        self.emit(StageStarted(case_name, stage, tuple(h.name for h, _ in orders)))
        try:
            await asyncio.gather(
                *(
                    self._host_stage(case, stage, kind, host, order, host_result)
                    for (host, order), host_result in zip(orders, result.hosts, strict=True)
                )
            )
        finally:
            self.fleet.end_stage(stage_id)
        if self.suite.logs:
            await asyncio.gather(
                *(self._collect(case_name, stage, stage_id, hr) for hr in result.hosts)
            )
        result.status = worst([h.status for h in result.hosts])
        result.ended_at = now()
        self.emit(StageEnded(case_name, result))
        return result

    async def _host_stage(
        self,
        case: Case | None,
        stage: str,
        kind: CaseKind,
        host: Host,
        order: StageOrder,
        result: HostResult,
    ) -> None:
        case_name = case.name if case is not None else None

        def on_output(text: str) -> None:
            if result.output is None:  # a host that prints nothing has no output file
                result.output = layout.output_path(case_name, stage, host.name)
            self.emit(HostOutput(case_name, stage, host.name, text))

        result.started_at = now()
        report = await self.fleet.session(host.name).run_stage(order, on_output)
        status, reason = kind.judge(self._context(case, stage, host), report.outcome)
        result.status, result.reason = status, reason
        result.exit_code = report.outcome.exit_code
        result.started_at, result.ended_at = report.started_at, report.ended_at
        result.data = report.outcome.data
        self.emit(HostStageEnded(case_name, stage, result))

    async def _collect(
        self, case: str | None, stage: str, stage_id: str, result: HostResult
    ) -> None:
        logs = await self.fleet.session(result.host).collect_logs(stage_id)
        files = tuple(
            (layout.log_path(case, stage, result.host, log.path), log.content)
            for log in logs
            if log.content  # nothing appended during the stage: nothing to keep
        )
        result.logs = [path for path, _ in files]
        if files:
            self.emit(HostLogs(case, stage, result.host, files))

    def _render(self, text: str, host: Host) -> str:
        return render(text, self.tags[host.name])


def _who(stage: StageResult) -> str:
    bad = [h for h in stage.hosts if not h.status.ok]
    return ", ".join(f"{h.host} ({h.reason or h.status})" for h in bad) or stage.status.value
