"""A run's start and end as every engine records and announces them: the
result with a pending entry per case, the stamp and `RunStarted` when it
begins, and at the end every unfinished case cancelled, the statuses folded
into the run's, the stamp and `RunEnded`.

Engines differ in how cases run (in lockstep across hosts, or side by side
on workers); they do not differ in this.
"""

from __future__ import annotations

from collections.abc import Callable

from phalanx.events import Event, RunEnded, RunRecord, RunStarted, now
from phalanx.model import CaseResult, RunResult, Status, Suite, worst


def new_result(run_id: str, suite: Suite, hosts: list[str]) -> RunResult:
    return RunResult(
        run_id=run_id,
        suite=suite.name,
        cluster=suite.cluster.name,
        hosts=hosts,
        cases=[CaseResult(name=c.name) for c in suite.cases],
    )


def start(result: RunResult, emit: Callable[[Event], None]) -> None:
    result.started_at = moment = now()
    result.status = Status.RUNNING
    emit(
        RunStarted(
            result.run_id,
            result.suite,
            tuple(result.hosts),
            tuple(c.name for c in result.cases),
            at=moment,
            cluster=result.cluster,
        )
    )


def finish(
    result: RunResult,
    emit: Callable[[Event], None],
    empty: Status = Status.PASSED,
    cancelled: str | None = None,
) -> None:
    """End the run. `empty`: its status when nothing ran at all.
    `cancelled`: why the run was cancelled, if it was; it is then the run's
    status and reason, whatever the cases that ended before it say."""
    for case in result.cases:
        if not case.status.done:  # the run was interrupted before or during it
            case.status = Status.CANCELLED
            case.reason = cancelled or "the run was cancelled"
            case.ended_at = case.ended_at or now()
    if cancelled is not None:
        result.status, result.reason = Status.CANCELLED, cancelled
    elif result.status is Status.RUNNING:
        statuses = [s.status for s in result.stages] + [c.status for c in result.cases]
        result.status = worst(statuses, empty=empty)
    if result.status in (Status.ERROR, Status.CANCELLED) and result.reason is None:
        result.reason = _first_reason(result)
    result.ended_at = now()
    emit(RunEnded(RunRecord.of(result)))


def _first_reason(result: RunResult) -> str:
    """Why a run that did not end well did not: its first stage or case of
    the run's status, named, with that one's reason."""
    for stage in result.stages:
        if stage.status is result.status:
            bad = [f"{h.host} ({h.reason or h.status})" for h in stage.hosts if not h.status.ok]
            return f"suite {stage.name} {stage.status}: {', '.join(bad) or stage.status}"
    for case in result.cases:
        if case.status is result.status:
            return f"{case.name}: {case.reason or case.status}"
    return str(result.status)
