"""What a person sees during a tree run: one line per finished test, in the
order tests finish, each test's output kept together under its own line
(shown with --verbose, and the tail of it for a test that did not pass), so
that output of parallel tests never interleaves.

What is kept of a test's output until it ends is bounded: whole lines cut
like the suite console's, up to VERBOSE_KEPT characters, then only the last
TAIL_LINES lines and a count of what was left out (the run folder has it
all). A closed stdout makes it quiet, not the run.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from phalanx import layout
from phalanx.board import tally, tally_text
from phalanx.events import CaseEnded, CaseRecord, Event, HostOutput
from phalanx.model import RunResult, seconds
from phalanx.report.outcomes import RED
from phalanx.report.terminal import Lines, SafeStream, last_lines, plural, shown_path

TAIL_LINES = 20
VERBOSE_KEPT = 1024 * 1024


@dataclass
class _Output:
    """One running test's output, as lines to show, bounded."""

    kept: list[str] = field(default_factory=list)
    size: int = 0  # characters in `kept`
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    left_out: int = 0  # lines neither kept nor in the tail

    def add(self, shown: str, keep: bool) -> None:
        if not shown:
            return
        if keep and self.size + len(shown) <= VERBOSE_KEPT and not self.left_out:
            self.kept.append(shown)
            self.size += len(shown)
            return
        lines = last_lines(shown, TAIL_LINES)
        dropped = len(self.tail) + len(lines) - TAIL_LINES
        self.left_out += max(0, dropped) + max(0, shown.count("\n") - len(lines))
        self.tail.extend(lines)

    def lines(self, whole: bool) -> list[str]:
        """All that was kept (whole) or the last TAIL_LINES lines."""
        if whole:
            shown = "".join(self.kept).rstrip("\n").split("\n") if self.kept else []
            if self.left_out:
                shown.append(f"… {plural(self.left_out, 'more line')}, then:")
            return shown + list(self.tail)
        recent = last_lines("".join(self.kept), TAIL_LINES) + list(self.tail)
        return recent[-TAIL_LINES:]


class TreeConsole:
    def __init__(self, stream: TextIO, verbose: bool = False, run_dir: Path | None = None) -> None:
        self.stream = SafeStream(stream)
        self.verbose = verbose
        self.run_dir = run_dir
        self._lines = Lines()
        self.output: dict[str, _Output] = {}  # a running test's output, until it ends

    def __call__(self, event: Event) -> None:
        # A test's line says what its CaseEnded record says, as the board
        # (board.py) folds it for the suite consoles; a fold of every event
        # for it cost a tenth of a tree run's own time per test.
        match event:
            case HostOutput(case=case, data=data) if case is not None:
                shown = self._lines.feed(case, data)
                self.output.setdefault(case, _Output()).add(shown, self.verbose)
            case CaseEnded(result=result):
                output = self.output.pop(result.name, _Output())
                output.add(self._lines.flush(result.name), self.verbose)
                self._case(output, result)

    def _case(self, output: _Output, case: CaseRecord) -> None:
        took = seconds(case.started_at, case.ended_at) if case.started_at else 0.0
        line = f"{case.status.value.upper():9} {case.name}  {took:.2f}s"
        if case.reason:
            line += f"  ({case.reason})"
        lines = [line]
        shown = output.lines(whole=True) if self.verbose else []
        if not shown and case.status in RED:
            shown = output.lines(whole=False)
        lines += [f"    | {text}" for text in shown]
        if case.status in RED and self.run_dir is not None:
            for stage in case.stages:
                for host in stage.hosts:
                    if host.output is not None and not host.status.ok:
                        lines.append(f"    output: {shown_path(self.run_dir / host.output)}")
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


def summary(result: RunResult, stream: TextIO, run_dir: Path) -> None:
    out = SafeStream(stream)
    counted = tally_text(tally(c.status for c in result.cases)) or "no tests"
    took = seconds(result.started_at, result.ended_at)
    bad = [c for c in result.cases if c.status in RED]
    lines = [""]
    if bad:
        lines.append("not passed:")
        lines += [f"  {c.status.value:9} {c.name}  {c.reason or ''}".rstrip() for c in bad]
    lines.append(
        f"{plural(len(result.cases), 'test')}: {counted} · run {result.status.value} in {took:.2f}s"
    )
    if result.reason:
        lines.append(result.reason)
    lines.append(f"results: {shown_path(run_dir)}")
    if (run_dir / layout.REPORT_HTML).is_file():
        lines.append(f"report:  {shown_path(run_dir / layout.REPORT_HTML)}")
    out.write("\n".join(lines) + "\n")
    out.flush()
