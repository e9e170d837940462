from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phalanx.model import RunResult
from phalanx.report.tap import write_tap

_POINT = re.compile(r"^(not )?ok (\d+) - ((?:[^#\\]|\\.)*?)(?: # (SKIP|TODO)\b ?(.*))?$")


@dataclass
class Point:
    ok: bool
    number: int
    description: str
    directive: str | None
    reason: str
    diagnostics: dict[str, Any] = field(default_factory=dict)


def parse(text: str) -> tuple[int, list[Point]]:
    """A strict TAP 13 reader: what a CI TAP consumer checks."""
    lines = text.splitlines()
    assert lines[0] == "TAP version 13"
    plan = re.fullmatch(r"1\.\.(\d+)", lines[1])
    assert plan is not None
    points: list[Point] = []
    i = 2
    while i < len(lines):
        match = _POINT.match(lines[i])
        assert match is not None, lines[i]
        not_ok, number, description, directive, reason = match.groups()
        point = Point(
            not not_ok, int(number), re.sub(r"\\(.)", r"\1", description), directive, reason or ""
        )
        i += 1
        if i < len(lines) and lines[i] == "  ---":
            end = lines.index("  ...", i)
            point.diagnostics = yaml.safe_load("\n".join(line[2:] for line in lines[i + 1 : end]))
            i = end + 1
        points.append(point)
    return int(plan.group(1)), points


def test_plan_and_points(mixed_run: RunResult, run_dir: Path) -> None:
    write_tap(mixed_run, run_dir / "results.tap")
    planned, points = parse((run_dir / "results.tap").read_text())
    assert planned == len(points) == 8
    assert [p.number for p in points] == list(range(1, 9))
    assert [(p.ok, p.description) for p in points] == [
        (True, "suite.initialize"),
        (True, "case_pass"),
        (False, "case_fail"),
        (False, "case_error"),
        (False, "case_timeout"),
        (True, "case_skip"),
        (True, "suite.finalize"),
        (True, "suite"),
    ]
    skip = points[5]
    assert (skip.directive, skip.reason) == ("SKIP", "needs \\#ipv6 support")
    assert points[1].diagnostics == {}


def test_the_plan_is_the_cases_and_three_suite_points_whatever_happened(
    mixed_run: RunResult,
    init_failed_run: RunResult,
    provisioning_failed_run: RunResult,
    cancelled_run: RunResult,
    run_dir: Path,
) -> None:
    for result in (mixed_run, init_failed_run, provisioning_failed_run, cancelled_run):
        write_tap(result, run_dir / "results.tap")
        planned, points = parse((run_dir / "results.tap").read_text())
        assert planned == len(points) == len(result.cases) + 3
        names = [p.description for p in points]
        assert names[0] == "suite.initialize" and names[-2:] == ["suite.finalize", "suite"]


def test_diagnostics_name_failing_stages_hosts_and_reasons(
    mixed_run: RunResult, run_dir: Path
) -> None:
    write_tap(mixed_run, run_dir / "results.tap")
    _, points = parse((run_dir / "results.tap").read_text())
    fail = points[2].diagnostics
    assert fail["status"] == "failed"
    assert fail["reason"] == "run failed: srv1.phalanx.test (exit code 1)"
    assert fail["duration_ms"] == 4500
    assert fail["failing"] == [
        {
            "stage": "run",
            "host": "srv1.phalanx.test",
            "status": "failed",
            "exit_code": 1,
            "reason": "exit code 1",
            "output": "cases/case_fail/run/srv1.phalanx.test.log",
        }
    ]
    assert points[3].diagnostics["failing"][0]["status"] == "error"
    assert points[3].diagnostics["failing"][0]["reason"] == "agent lost"
    assert points[4].diagnostics["status"] == "timeout"


def test_suite_initialize_failure(init_failed_run: RunResult, run_dir: Path) -> None:
    write_tap(init_failed_run, run_dir / "results.tap")
    planned, points = parse((run_dir / "results.tap").read_text())
    assert planned == 5
    assert [(p.ok, p.description, p.directive) for p in points] == [
        (False, "suite.initialize", None),
        (True, "case_a", "SKIP"),
        (True, "case_b", "SKIP"),
        (True, "suite.finalize", None),
        (True, "suite", None),
    ]
    assert points[0].diagnostics["failing"][0]["host"] == "srv1.phalanx.test"
    assert points[1].reason.startswith("suite initialize failed")


def test_a_run_that_never_started_is_not_ok(
    provisioning_failed_run: RunResult, run_dir: Path
) -> None:
    write_tap(provisioning_failed_run, run_dir / "results.tap")
    _, points = parse((run_dir / "results.tap").read_text())
    assert [(p.ok, p.description, p.directive) for p in points] == [
        (True, "suite.initialize", "SKIP"),
        (True, "case_a", "SKIP"),
        (True, "suite.finalize", "SKIP"),
        (False, "suite", None),
    ]
    assert points[0].reason.startswith("did not run: provisioning failed")
    assert points[3].diagnostics["status"] == "error"
    assert points[3].diagnostics["reason"].startswith("provisioning failed")


def test_a_cancelled_run(cancelled_run: RunResult, run_dir: Path) -> None:
    write_tap(cancelled_run, run_dir / "results.tap")
    planned, points = parse((run_dir / "results.tap").read_text())
    assert planned == 6
    assert [(p.ok, p.directive) for p in points] == [
        (True, "SKIP"),
        (True, None),
        (False, None),
        (True, "SKIP"),
        (True, "SKIP"),
        (True, None),
    ]
    assert points[0].reason == "the suite has none"
    assert points[2].diagnostics["status"] == "cancelled"
    assert points[3].reason == "did not run: cancelled by alice"
