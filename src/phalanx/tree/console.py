"""What a person sees during a tree run: one line per finished test, in the
order tests finish, each test's output kept together under its own line
(shown with --verbose, and the tail of it for a test that did not pass), so
that output of parallel tests never interleaves."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from phalanx.board import Board, Row, tally, tally_text
from phalanx.events import CaseEnded, Event, HostOutput
from phalanx.model import RunResult, seconds
from phalanx.report.outcomes import RED

TAIL_LINES = 20


class TreeConsole:
    def __init__(self, stream: TextIO, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose
        self.board = Board()
        self.output: dict[str, list[str]] = {}  # a test's whole output, until it ends

    def __call__(self, event: Event) -> None:
        self.board.apply(event)
        match event:
            case HostOutput(case=case, text=text) if case is not None:
                self.output.setdefault(case, []).append(text)
            case CaseEnded(result=result):
                row = self.board.case(result.name)
                assert row is not None  # the board just saw it
                self._case(row, "".join(self.output.pop(result.name, [])))

    def _case(self, row: Row, output: str) -> None:
        line = f"{row.status.value.upper():9} {row.name}  {row.seconds or 0.0:.2f}s"
        if row.reason:
            line += f"  ({row.reason})"
        lines = [line]
        shown = output if self.verbose else ""
        if not shown and row.status in RED and output:
            shown = "\n".join(output.rstrip("\n").split("\n")[-TAIL_LINES:])
        if shown:
            lines += [f"    | {text}" for text in shown.rstrip("\n").split("\n")]
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


def summary(result: RunResult, stream: TextIO, run_dir: Path) -> None:
    counted = tally_text(tally(c.status for c in result.cases)) or "no tests"
    took = seconds(result.started_at, result.ended_at)
    bad = [c for c in result.cases if c.status in RED]
    lines = [""]
    if bad:
        lines.append("not passed:")
        lines += [f"  {c.status.value:9} {c.name}  {c.reason or ''}".rstrip() for c in bad]
    lines.append(f"{len(result.cases)} tests: {counted} · run {result.status.value} in {took:.2f}s")
    if result.reason:
        lines.append(result.reason)
    lines.append(f"results: {run_dir}")
    stream.write("\n".join(lines) + "\n")
    stream.flush()
