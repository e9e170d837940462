"""A run folded into the entries a report lists: one per case, plus the suite
stages that did not pass, plus the run itself when it failed for a reason no
other entry shows (e.g. provisioning). JUnit, TAP and the console summary
share this so they always agree on what failed and why."""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.model import HostResult, RunResult, StageResult, Status, seconds

SUITE_ENTRY = "suite"

# The statuses that make a report red; pending or running at the end of a run
# means the entry never ran (the run stopped first).
RED = frozenset({Status.FAILED, Status.ERROR, Status.TIMEOUT, Status.CANCELLED})


@dataclass(frozen=True)
class Problem:
    """One host that did not pass one stage (host None: the stage itself)."""

    stage: StageResult
    host: HostResult | None

    @property
    def status(self) -> Status:
        return self.host.status if self.host is not None else self.stage.status

    @property
    def reason(self) -> str | None:
        return self.host.reason if self.host is not None else None

    def describe(self) -> str:
        who = f"{self.stage.name} on {self.host.host}" if self.host else self.stage.name
        return f"{who}: {self.status}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class Entry:
    name: str
    status: Status
    reason: str | None
    seconds: float
    problems: tuple[Problem, ...]
    stages: tuple[StageResult, ...] = ()

    @property
    def message(self) -> str:
        """One line saying why the entry did not pass."""
        if self.reason:
            return self.reason
        if self.problems:
            return "; ".join(p.describe() for p in self.problems)
        return str(self.status)


def problems(stages: list[StageResult]) -> tuple[Problem, ...]:
    found: list[Problem] = []
    for stage in stages:
        if stage.status.ok:
            continue
        bad = [h for h in stage.hosts if not h.status.ok]
        found.extend(Problem(stage, h) for h in bad)
        if not bad:
            found.append(Problem(stage, None))
    return tuple(found)


def entries(result: RunResult) -> list[Entry]:
    suite_stages = {s.name: s for s in result.stages}
    listed: list[Entry] = []

    def stage_entry(name: str) -> None:
        stage = suite_stages.get(name)
        if stage is not None and not stage.status.ok:
            found = problems([stage])
            message = "; ".join(p.describe() for p in found)
            listed.append(
                Entry(
                    f"{SUITE_ENTRY}.{name}",
                    stage.status,
                    message,
                    seconds(stage.started_at, stage.ended_at),
                    found,
                    (stage,),
                )
            )

    stage_entry("initialize")
    for case in result.cases:
        listed.append(
            Entry(
                case.name,
                case.status,
                case.reason,
                seconds(case.started_at, case.ended_at),
                problems(case.stages),
                tuple(case.stages),
            )
        )
    stage_entry("finalize")
    explained = any(e.status in RED for e in listed)
    if result.status in RED and not explained:
        # Nothing else would turn the report red: say why the run did not pass.
        listed.append(
            Entry(
                SUITE_ENTRY,
                result.status,
                result.reason or f"run {result.status}",
                seconds(result.started_at, result.ended_at),
                (),
            )
        )
    return listed
