"""What a person sees during a tree run: one line per finished test, in the
order tests finish, each test's output kept together under its own line
(shown with --verbose, and the tail of it for a test that did not pass), so
that output of parallel tests never interleaves."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TextIO

from phalanx.events import CaseEnded, Event, HostOutput
from phalanx.model import CaseResult, RunResult, Status
from phalanx.report.outcomes import seconds

TAIL_LINES = 20
_RED = {Status.FAILED, Status.ERROR, Status.TIMEOUT, Status.CANCELLED}


class TreeConsole:
    def __init__(self, stream: TextIO, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose
        self.output: dict[str, list[str]] = {}

    def __call__(self, event: Event) -> None:
        match event:
            case HostOutput(case=case, text=text) if case is not None:
                self.output.setdefault(case, []).append(text)
            case CaseEnded(result=result):
                self._case(result, "".join(self.output.pop(result.name, [])))

    def _case(self, result: CaseResult, output: str) -> None:
        took = seconds(result.started_at, result.ended_at)
        line = f"{result.status.value.upper():9} {result.name}  {took:.2f}s"
        if result.reason:
            line += f"  ({result.reason})"
        lines = [line]
        shown = output if self.verbose else ""
        if not shown and result.status in _RED and output:
            shown = "\n".join(output.rstrip("\n").split("\n")[-TAIL_LINES:])
        if shown:
            lines += [f"    | {text}" for text in shown.rstrip("\n").split("\n")]
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


def summary(result: RunResult, stream: TextIO, run_dir: Path) -> None:
    counts = Counter(c.status for c in result.cases)
    tally = ", ".join(f"{counts[s]} {s.value}" for s in Status if counts[s]) or "no tests"
    took = seconds(result.started_at, result.ended_at)
    bad = [c for c in result.cases if c.status in _RED]
    lines = [""]
    if bad:
        lines.append("not passed:")
        lines += [f"  {c.status.value:9} {c.name}  {c.reason or ''}".rstrip() for c in bad]
    lines.append(f"{len(result.cases)} tests: {tally} · run {result.status.value} in {took:.2f}s")
    if result.reason:
        lines.append(result.reason)
    lines.append(f"results: {run_dir}")
    stream.write("\n".join(lines) + "\n")
    stream.flush()
