"""What both engines do the same way: one host's part of one stage, a
case's walk through its stages, and how a case's stages fold into its
status and reason.

The lockstep engine runs a stage on many hosts behind barriers, the pool
engine on one worker's host; a host's part of it (send the order, stream
its output, judge the outcome with the case's kind, announce the host's
end) is this one step in both, like pytest's single `call_and_report`. So
the same failure reads the same in a suite run and in a tree run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from phalanx import layout
from phalanx.engine.session import HostSession, StageOrder
from phalanx.events import (
    CaseEnded,
    CaseRecord,
    Event,
    HostLogs,
    HostOutput,
    HostStageEnded,
    now,
)
from phalanx.kinds.base import CaseKind, StageContext
from phalanx.model import Case, CaseHistory, CaseResult, HostResult, StageResult, Status, worst

SUITE_SCOPE = "suite"
INITIALIZE_DID_NOT_PASS = "case initialize did not pass"
FINALIZE = "finalize"

Emit = Callable[[Event], None]
T = TypeVar("T")


def scope_id(run_id: str, index: int, case: str | None) -> str:
    """A case in its run (the suite's stages: index 0, `suite`): what its
    stages leave running lives until the scope ends."""
    return f"{run_id}:{index}:{case or SUITE_SCOPE}"


def stage_id(run_id: str, index: int, case: str | None, stage: str) -> str:
    """Unique in the run: a case run twice (a repeated tree test) has two
    indexes. Its scope's id, then the stage."""
    return f"{scope_id(run_id, index, case)}:{stage}"


class Cancellation:
    """A request to stop a run, as the edge (a signal handler, a service's
    cancel button) makes it; the engines ask it before every case and stage.

    `cancel`: the stages running now are cancelled on their hosts (their
    process groups end) and no case or stage starts any more, except the
    `finalize` stages, which still run so that hosts are left clean.
    `abort`: the finalizes too are cut short, and nothing starts at all.
    Either way the engine ends normally, with every result it has."""

    def __init__(self) -> None:
        self.reason: str | None = None  # the run's: why it was cancelled
        self.aborted: str | None = None  # why the finalizes were cut short too
        self._running: dict[tuple[int, str], tuple[HostSession, str, str]] = {}
        self._listeners: list[Callable[[], None]] = []

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        self._stop(lambda stage: stage != FINALIZE)

    def abort(self, reason: str) -> None:
        if self.aborted is not None:
            return
        self.reason = self.reason or reason
        self.aborted = reason
        self._stop(lambda stage: True)

    def allows(self, stage: str) -> bool:
        """Whether a stage named `stage` may still start."""
        if self.aborted is not None:
            return False
        return self.reason is None or stage == FINALIZE

    def why(self, stage: str) -> str:
        """The reason given to a host whose `stage` was cancelled."""
        if stage == FINALIZE and self.aborted is not None:
            return f"{self.reason}; finalize cut short: {self.aborted}"
        return self.reason or "cancelled"

    def on_request(self, listener: Callable[[], None]) -> None:
        """Call `listener` once a cancel is requested (at once if it was)."""
        if self.requested:
            listener()
        else:
            self._listeners.append(listener)

    def _stop(self, which: Callable[[str], bool]) -> None:
        for session, sid, stage in list(self._running.values()):
            if which(stage):
                session.cancel(sid)
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener()

    @contextlib.contextmanager
    def running(self, session: HostSession, order: StageOrder, stage: str) -> Iterator[None]:
        key = (id(session), order.stage_id)
        self._running[key] = (session, order.stage_id, stage)
        try:
            yield
        finally:
            self._running.pop(key, None)


async def host_stage(
    session: HostSession,
    order: StageOrder,
    kind: CaseKind,
    context: StageContext,
    emit: Emit,
    cancellation: Cancellation | None = None,
) -> HostResult:
    """Run `order` on `session`; its output goes out as HostOutput, its
    judged end as HostStageEnded. A cancelled run does not start it (the
    host's part is `cancelled`) and cancels it while it runs."""
    case = context.case.name if context.case is not None else None
    stage, host = context.stage, order.host
    if cancellation is not None and not cancellation.allows(stage):
        moment = now()
        result = HostResult(
            host=host,
            status=Status.CANCELLED,
            reason=cancellation.why(stage),
            started_at=moment,
            ended_at=moment,
        )
        emit(HostStageEnded(case, stage, result, order.stage_id))
        return result
    printed = False

    def on_output(data: bytes) -> None:
        nonlocal printed
        printed = True  # a host that prints nothing has no output file
        emit(HostOutput(case, stage, host, data))

    if cancellation is None:
        report = await session.run_stage(order, on_output)
    else:
        with cancellation.running(session, order, stage):
            report = await session.run_stage(order, on_output)
    status, reason = kind.judge(context, report.outcome)
    if status is Status.CANCELLED and cancellation is not None and cancellation.requested:
        reason = cancellation.why(stage)
    result = HostResult(
        host=host,
        status=status,
        exit_code=report.outcome.exit_code,
        signal=report.outcome.signal,
        started_at=report.started_at,
        ended_at=report.ended_at,
        output=layout.output_path(case, stage, host) if printed else None,
        reason=reason,
        # a skipped host's data only says why: its reason
        data=report.outcome.data if status is not Status.SKIPPED else None,
    )
    emit(HostStageEnded(case, stage, result, order.stage_id))
    return result


async def every_host(steps: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run the hosts' steps side by side; return when all have ended, in
    order. If one raises or the run is cancelled, the others are cancelled
    and waited for: no host is still in a stage when the next one starts."""
    tasks = [asyncio.ensure_future(s) for s in steps]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def collect_logs(
    session: HostSession,
    case: str | None,
    stage: str,
    stage_id: str,
    result: HostResult,
    emit: Emit,
) -> HostResult:
    """Fetch what the host's logs gained during the stage and hand their
    content to sinks as HostLogs; `result` with the files named."""
    logs = await session.collect_logs(stage_id)
    files = tuple(
        (layout.log_path(case, stage, result.host, log.path), log.content)
        for log in logs
        if log.content  # nothing appended during the stage: nothing to keep
    )
    if files:
        emit(HostLogs(case, stage, result.host, files))
    return replace(result, logs=tuple(path for path, _ in files))


async def run_case(
    case: Case,
    kind: CaseKind,
    result: CaseResult,
    run: Callable[[str], Awaitable[StageResult]],
    skip: Callable[[str, str, Status], StageResult],
    emit: Emit,
    empty: Status = Status.PASSED,
    cancellation: Cancellation | None = None,
    history: Callable[[], CaseHistory | None] | None = None,
) -> None:
    """Walk the case's stages: `run(stage)` runs one, `skip(stage, reason,
    status)` records one that does not run. A failed initialize skips `run`;
    finalize always runs, unless the run is aborted; the other stages of a
    cancelled run are recorded `cancelled`. `empty`: the case's status if it
    has no stage. `history`: what its clients recorded, taken once its
    stages are over; judged by the case's `check:`, part of its verdict."""
    result.started_at = now()
    result.status = Status.RUNNING
    initialized = True
    for stage in kind.stages(case):
        if cancellation is not None and not cancellation.allows(stage):
            result.stages.append(skip(stage, cancellation.why(stage), Status.CANCELLED))
            continue
        if stage == "run" and not initialized:
            result.stages.append(skip(stage, INITIALIZE_DID_NOT_PASS, Status.SKIPPED))
            continue
        stage_result = await run(stage)
        result.stages.append(stage_result)
        if stage == "initialize" and not stage_result.status.ok:
            initialized = False
    result.status = worst([s.status for s in result.stages], empty=empty)
    result.reason = case_reason(result.stages)
    if history is not None:
        judge_history(case, result, history())
    result.ended_at = now()
    emit(CaseEnded(CaseRecord.of(result)))


def judge_history(case: Case, result: CaseResult, history: CaseHistory | None) -> None:
    """The case's history into its result: a check that fails fails the
    case (`history not linearizable on key x`); a nemesis that could not
    do its work is an error (the case did not test what it meant to)."""
    ran = any(s.name == "run" and s.status not in UNRAN for s in result.stages)
    if case.check is not None and (ran or history is not None):
        from phalanx.history.judge import judge  # the checkers: only for cases that check

        history = judge(history or CaseHistory(), case.check)
    result.history = history
    if history is None:
        return
    problems: list[tuple[Status, str]] = []
    if history.valid is False and history.verdict:
        problems.append((Status.FAILED, history.verdict))
    if history.nemesis_error is not None:
        problems.append((Status.ERROR, f"nemesis: {history.nemesis_error}"))
    for status, why in problems:
        result.reason = why if result.status.ok else f"{result.reason}; {why}"
        result.status = worst([result.status, status])


UNRAN = (Status.SKIPPED, Status.CANCELLED, Status.PENDING)


def case_reason(stages: Sequence[StageResult]) -> str | None:
    """Why a case did not pass, stage by stage and host by host:
    `run failed: h1 (exit code 1)`. A case that passed or was skipped keeps
    what its hosts noted (`skip: ...`, `failed as expected ...`), if anything."""
    failing = [s for s in stages if not s.status.ok]
    if failing:
        return "; ".join(f"{s.name} {s.status}: {who(s)}" for s in failing)
    notes = dict.fromkeys(h.reason for s in stages for h in s.hosts if h.reason)
    return "; ".join(n for n in notes if n) or None


def who(stage: StageResult) -> str:
    """The hosts that did not pass a stage, with their reason; hosts that
    share one are named together, so that the reason is said once."""
    by_reason: dict[str, list[str]] = {}
    for h in stage.hosts:
        if not h.status.ok:
            by_reason.setdefault(h.reason or h.status.value, []).append(h.host)
    return (
        ", ".join(f"{', '.join(hosts)} ({reason})" for reason, hosts in by_reason.items())
        or stage.status.value
    )
