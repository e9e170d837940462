"""TAP version 13: one test point per case, framed by the suite's own
points, with a YAML diagnostics block under every point that did not pass.

The plan is the same whatever happens (a TAP consumer compares it across
runs): `suite.initialize`, every case, `suite.finalize`, and `suite`, the
run as a whole. A suite stage that passed, or that the suite does not have,
is an `ok` point; the run's point fails only when nothing else says why the
run did not pass (e.g. its hosts could not be brought up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from phalanx.model import RunResult, Status, seconds
from phalanx.report.files import write_atomic
from phalanx.report.outcomes import SUITE_ENTRY, Entry, Problem, entries


def _one_line(text: str) -> str:
    """A description or directive ends at the line; `#` would start a
    directive, so it is escaped as TAP says."""
    return " ".join(text.split()).replace("\\", "\\\\").replace("#", "\\#")


def _problem(problem: Problem) -> dict[str, Any]:
    found: dict[str, Any] = {"stage": problem.stage.name}
    host = problem.host
    if host is None:
        found["status"] = problem.stage.status.value
        return found
    found.update(host=host.host, status=host.status.value)
    if host.exit_code is not None:
        found["exit_code"] = host.exit_code
    if host.reason:
        found["reason"] = host.reason
    if host.output:
        found["output"] = host.output
    return found


def _diagnostics(entry: Entry) -> list[str]:
    block: dict[str, Any] = {
        "status": entry.status.value,
        "duration_ms": round(entry.seconds * 1000),
    }
    if entry.reason:
        block["reason"] = entry.reason
    if entry.problems:
        block["failing"] = [_problem(p) for p in entry.problems]
    text = yaml.safe_dump(block, sort_keys=False, allow_unicode=True, width=1_000_000)
    return ["  ---", *(f"  {line}" for line in text.splitlines()), "  ..."]


def _point(number: int, entry: Entry, result: RunResult) -> list[str]:
    name = _one_line(entry.name)
    if entry.status is Status.PASSED:
        return [f"ok {number} - {name}"]
    if entry.status is Status.SKIPPED:
        return [f"ok {number} - {name} # SKIP {_one_line(entry.reason or 'skipped')}"]
    if not entry.status.done:
        # It never ran: the run stopped first. Not a pass, not the test's fault.
        why = _one_line(f"did not run: {result.reason or 'the run stopped before it'}")
        return [f"ok {number} - {name} # SKIP {why}"]
    return [f"not ok {number} - {name}", *_diagnostics(entry)]


def _framed(result: RunResult) -> list[Entry]:
    """Every case between the suite's points, each suite point present."""
    listed = {e.name: e for e in entries(result)}
    ran = {s.name: s for s in result.stages}
    took = seconds(result.started_at, result.ended_at)

    def suite_point(name: str) -> Entry:
        if name in listed:
            return listed[name]
        stage = ran.get(name.rpartition(".")[2])
        if stage is not None:  # it passed
            return Entry(name, stage.status, None, seconds(stage.started_at, stage.ended_at), ())
        if not result.stages and not any(c.started_at for c in result.cases):
            return Entry(name, Status.PENDING, None, 0.0, ())  # the run never got that far
        return Entry(name, Status.SKIPPED, "the suite has none", 0.0, ())

    run = listed.get(SUITE_ENTRY) or Entry(SUITE_ENTRY, Status.PASSED, None, took, ())
    names = {c.name for c in result.cases}
    cases = [e for e in listed.values() if e.name in names]
    return [
        suite_point(f"{SUITE_ENTRY}.initialize"),
        *cases,
        suite_point(f"{SUITE_ENTRY}.finalize"),
        run,
    ]


def to_tap(result: RunResult) -> str:
    listed = _framed(result)
    lines = ["TAP version 13", f"1..{len(listed)}"]
    for number, entry in enumerate(listed, start=1):
        lines.extend(_point(number, entry, result))
    return "\n".join(lines) + "\n"


def write_tap(result: RunResult, path: Path) -> None:
    write_atomic(path, to_tap(result).encode("utf-8"))
