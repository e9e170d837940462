"""Hand-built runs covering every status, with real output files on disk."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from phalanx import layout
from phalanx.model import CaseResult, HostResult, RunResult, StageResult, Status, worst

SRV1 = "srv1.phalanx.test"
SRV2 = "srv2.phalanx.test"
HOSTS = [SRV1, SRV2]
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)  # microsecond 0 on purpose

# What the failing host printed: colors, a NUL and a bare ESC, and enough
# lines that only the tail can fit in a report.
FAILING_OUTPUT = (
    "".join(f"setup line {i}\n" for i in range(300))
    + "\x1b[31mERROR\x1b[0m: connection refused\n"
    + "binary junk: \x00 and a bare \x1b here\n"
    + "LAST LINE OF SRV1\n"
)
PASSING_OUTPUT = "SRV2-PASSING-OUTPUT all good\n"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def host(
    name: str,
    case: str | None,
    stage: str,
    status: Status = Status.PASSED,
    start: float = 0.0,
    end: float = 1.0,
    exit_code: int | None = 0,
    reason: str | None = None,
) -> HostResult:
    return HostResult(
        host=name,
        status=status,
        exit_code=exit_code,
        started_at=at(start),
        ended_at=at(end),
        output=layout.output_path(case, stage, name),
        reason=reason,
    )


def stage(name: str, hosts: list[HostResult]) -> StageResult:
    return StageResult(
        name=name,
        status=worst([h.status for h in hosts]),
        hosts=hosts,
        started_at=min(h.started_at for h in hosts if h.started_at),
        ended_at=max(h.ended_at for h in hosts if h.ended_at),
    )


def passing_case(name: str, start: float) -> CaseResult:
    stages = [
        stage(s, [host(h, name, s, start=start + i, end=start + i + 0.5) for h in HOSTS])
        for i, s in enumerate(("initialize", "run", "finalize"))
    ]
    return CaseResult(
        name=name, status=Status.PASSED, stages=stages, started_at=at(start), ended_at=at(start + 3)
    )


def case_with_run(name: str, start: float, run: list[HostResult], reason: str) -> CaseResult:
    stages = [
        stage(
            "initialize", [host(h, name, "initialize", start=start, end=start + 1) for h in HOSTS]
        ),
        stage("run", run),
        stage(
            "finalize", [host(h, name, "finalize", start=start + 3, end=start + 4) for h in HOSTS]
        ),
    ]
    return CaseResult(
        name=name,
        status=worst([s.status for s in stages]),
        reason=reason,
        stages=stages,
        started_at=at(start).replace(microsecond=250_000),
        ended_at=at(start + 4).replace(microsecond=750_000),
    )


def write_outputs(run_dir: Path, result: RunResult, special: dict[str, str]) -> None:
    """Give every host result an output file; `special` overrides by path."""
    stages = [*result.stages, *(s for c in result.cases for s in c.stages)]
    for s in stages:
        for h in s.hosts:
            if h.output is None:
                continue
            path = run_dir / h.output
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(special.get(h.output, f"{h.host} {s.name} ok\n").encode())


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "phalanx-results" / "run-1"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def mixed_run(run_dir: Path) -> RunResult:
    """Suite stages pass; one case of each status."""
    fail_run = [
        host(SRV1, "case_fail", "run", Status.FAILED, 11, 12.5, 1, "exit code 1"),
        host(SRV2, "case_fail", "run", start=11, end=11.2),
    ]
    error_run = [
        host(SRV1, "case_error", "run", start=21, end=22),
        host(SRV2, "case_error", "run", Status.ERROR, 21, 23, None, "agent lost"),
    ]
    timeout_run = [
        host(
            SRV1,
            "case_timeout",
            "run",
            Status.TIMEOUT,
            31,
            91,
            -9,
            "stage timed out; its process group was killed",
        ),
        host(SRV2, "case_timeout", "run", start=31, end=32),
    ]
    init = stage("initialize", [host(h, None, "initialize", start=0, end=1) for h in HOSTS])
    final = stage("finalize", [host(h, None, "finalize", start=100, end=101) for h in HOSTS])
    init.hosts[0] = replace(
        init.hosts[0],
        logs=("suite/initialize/logs/srv1.phalanx.test/var_log_xrootd.log",),
        data={"throughput": 12.5, "ok": True},
    )
    result = RunResult(
        run_id="run-1",
        suite="hello",
        status=Status.ERROR,
        cluster="cluster_hello",
        hosts=HOSTS,
        stages=[init, final],
        cases=[
            passing_case("case_pass", 2),
            case_with_run("case_fail", 10, fail_run, "run failed: srv1.phalanx.test (exit code 1)"),
            case_with_run("case_error", 20, error_run, "run error: srv2.phalanx.test (agent lost)"),
            case_with_run("case_timeout", 30, timeout_run, "run timeout: srv1.phalanx.test"),
            CaseResult(name="case_skip", status=Status.SKIPPED, reason="needs #ipv6\nsupport"),
        ],
        started_at=T0,
        ended_at=at(101.5),
    )
    write_outputs(
        run_dir,
        result,
        {
            "cases/case_fail/run/srv1.phalanx.test.log": FAILING_OUTPUT,
            "cases/case_fail/run/srv2.phalanx.test.log": PASSING_OUTPUT,
        },
    )
    return result


@pytest.fixture
def init_failed_run(run_dir: Path) -> RunResult:
    """Suite initialize fails on one host: every case is skipped with that reason."""
    reason = "suite initialize failed: srv1.phalanx.test (exit code 3)"
    init = stage(
        "initialize",
        [
            host(SRV1, None, "initialize", Status.FAILED, 0, 2, 3, "exit code 3"),
            host(SRV2, None, "initialize", start=0, end=1),
        ],
    )
    final = stage("finalize", [host(h, None, "finalize", start=3, end=4) for h in HOSTS])
    result = RunResult(
        run_id="run-2",
        suite="hello",
        status=Status.FAILED,
        reason=reason,
        hosts=HOSTS,
        stages=[init, final],
        cases=[
            CaseResult(name="case_a", status=Status.SKIPPED, reason=reason),
            CaseResult(name="case_b", status=Status.SKIPPED, reason=reason),
        ],
        started_at=T0,
        ended_at=at(4),
    )
    write_outputs(
        run_dir,
        result,
        {"suite/initialize/srv1.phalanx.test.log": "mkdir: cannot create /data: denied\n"},
    )
    return result


@pytest.fixture
def provisioning_failed_run() -> RunResult:
    """Nothing ran: the cluster never came up."""
    reason = "provisioning failed: agent on srv2.phalanx.test did not connect within 60s"
    return RunResult(
        run_id="run-3",
        suite="hello",
        status=Status.ERROR,
        reason=reason,
        hosts=HOSTS,
        cases=[CaseResult(name="case_a", status=Status.SKIPPED, reason=reason)],
        started_at=T0,
        ended_at=at(60),
    )


@pytest.fixture
def cancelled_run(run_dir: Path) -> RunResult:
    """Stopped by a user during case_b: case_c never ran."""
    cancelled = [
        host(SRV1, "case_b", "run", Status.CANCELLED, 5, 6, None, "cancelled"),
        host(SRV2, "case_b", "run", Status.CANCELLED, 5, 6, None, "cancelled"),
    ]
    result = RunResult(
        run_id="run-4",
        suite="hello",
        status=Status.CANCELLED,
        reason="cancelled by alice",
        hosts=HOSTS,
        cases=[
            passing_case("case_a", 1),
            case_with_run("case_b", 4, cancelled, "run cancelled: both hosts"),
            CaseResult(name="case_c"),
        ],
        started_at=T0,
        ended_at=at(10),
    )
    write_outputs(run_dir, result, {})
    return result
