"""What a person sees while a run goes, and after it.

Two sinks read the engine's events: `PlainConsole` writes one line per event
(logs, CI, pipes, `--plain`); `LiveConsole` keeps a Rich table of cases by
hosts up to date on a terminal. `summary` prints the verdict at the end.
Both sinks only record what an event says; anything costly (formatting a
table, writing a terminal) happens outside the engine's call.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from phalanx.board import Board, Cell, Snapshot, Tally, tally, tally_text
from phalanx.events import (
    CaseEnded,
    Event,
    HostLogs,
    HostOutput,
    HostStageEnded,
    RunEnded,
    RunStarted,
    StageEnded,
    StageStarted,
    now,
)
from phalanx.model import RunResult, Status, seconds
from phalanx.report.outcomes import Entry, entries

STYLES: dict[Status, str] = {
    Status.PENDING: "dim",
    Status.RUNNING: "blue",
    Status.PASSED: "green",
    Status.FAILED: "bold red",
    Status.ERROR: "bold magenta",
    Status.SKIPPED: "cyan",
    Status.TIMEOUT: "bold yellow",
    Status.CANCELLED: "bright_black",
}

_Key = tuple[str | None, str, str]  # case (None: the suite), stage, host

# C0 controls a log viewer chokes on; tab, CR (progress bars) and ESC (colors,
# which CI log viewers render) pass through.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")


def duration(value: float) -> str:
    value = round(value, 2)  # so 59.999 reads 1m00s, not 60.00s
    if value < 60:
        return f"{value:.2f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def _clock(moment: datetime | None) -> str:
    """Wall-clock time of day, local: what a person compares with their watch."""
    local = (moment or now()).astimezone()
    return local.strftime("%H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def styled(status: Status) -> Text:
    return Text(status.value, style=STYLES[status])


class _Started:
    """`with console:` starts it and stops it, whatever ends the block."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


class _Lines:
    """Output arrives in chunks cut anywhere; people read whole lines."""

    def __init__(self) -> None:
        self._partial: dict[_Key, str] = {}

    def feed(self, key: _Key, text: str) -> list[str]:
        text = self._partial.pop(key, "") + text
        *lines, rest = text.split("\n")
        if rest:
            self._partial[key] = rest
        return [line.rstrip("\r") for line in lines]

    def flush(self, key: _Key) -> list[str]:
        rest = self._partial.pop(key, "")
        return [rest] if rest else []


# --- one line per event ------------------------------------------------------


class PlainConsole(_Started):
    """`12:00:01.123 hello/case_a run srv1.phalanx.test passed (0.42s)`.

    A host's or a stage's line says what its event says; the run's state
    (the suite, a case's row, the tally) comes from the board."""

    def __init__(self, stream: TextIO, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose
        self.board = Board()
        self._lines = _Lines()

    def __call__(self, event: Event) -> None:
        self.board.apply(event)
        match event:
            case RunStarted():
                self._write(
                    event.at,
                    f"{event.suite} run {event.run_id} started: {len(event.cases)} cases "
                    f"on {', '.join(event.hosts)}",
                )
            case StageStarted():
                where = self._where(event.case)
                self._write(event.at, f"{where} {event.stage} started on {', '.join(event.hosts)}")
            case HostOutput():
                if self.verbose:
                    lines = self._lines.feed((event.case, event.stage, event.host), event.text)
                    self._output(event.host, lines)
            case HostStageEnded():
                result = event.result
                if self.verbose:
                    self._output(
                        result.host, self._lines.flush((event.case, event.stage, result.host))
                    )
                took = seconds(result.started_at, result.ended_at)
                line = f"{self._where(event.case)} {event.stage} {result.host} {result.status}"
                line += f" ({duration(took)})" + (f": {result.reason}" if result.reason else "")
                self._write(result.ended_at, line)
            case HostLogs():
                if self.verbose:
                    where = self._where(event.case)
                    count = len(event.files)
                    self._write(None, f"{where} {event.stage} {event.host} collected {count} logs")
            case StageEnded():
                stage = event.result
                line = f"{self._where(event.case)} {stage.name} {stage.status}"
                if stage.started_at is not None:
                    line += f" ({duration(seconds(stage.started_at, stage.ended_at))})"
                reasons = {h.reason for h in stage.hosts if h.reason and not h.status.ok}
                if not reasons and stage.status is Status.SKIPPED:
                    reasons = {h.reason for h in stage.hosts if h.reason}
                if reasons:
                    line += ": " + "; ".join(sorted(reasons))
                self._write(stage.ended_at, line)
            case CaseEnded():
                row = self.board.case(event.result.name)
                assert row is not None and row.name is not None  # the board just saw it
                line = f"{self._where(row.name)} case {row.status}"
                if row.seconds is not None:
                    line += f" ({duration(row.seconds)})"
                self._write(event.result.ended_at, line + (f": {row.reason}" if row.reason else ""))
            case RunEnded():
                run = self.board.snapshot()
                line = f"{run.suite} run {run.run_id} {run.status} ({duration(run.seconds or 0)})"
                line += f": {tally_text(run.tally) or 'no cases'}"
                self._write(run.ended_at, line + (f"; {run.reason}" if run.reason else ""))

    def _where(self, case: str | None) -> str:
        suite = self.board.suite
        return suite if case is None else f"{suite}/{case}"

    def _write(self, moment: datetime | None, line: str) -> None:
        self.stream.write(f"{_clock(moment)} {line}\n")
        self.stream.flush()

    def _output(self, host: str, lines: list[str]) -> None:
        if lines:
            text = "".join(f"{host}| {line}\n" for line in lines)
            self.stream.write(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))
            self.stream.flush()

    def start(self) -> None:
        """Nothing to start; here so both consoles are used the same way."""

    def stop(self) -> None:
        self.stream.flush()


# --- a live table --------------------------------------------------------------


class LiveConsole(_Started):
    """A table of cases by hosts, each cell the host's current stage and status.

    Events only update the board under a lock; Rich's refresh thread renders
    a snapshot of it. Starts on RunStarted and stops on RunEnded if nobody
    did it first; `with LiveConsole(...)` also works and guarantees the
    terminal is restored if the run blows up.
    """

    def __init__(
        self, console: Console, verbose: bool = False, refresh_per_second: float = 4.0
    ) -> None:
        self.console = console
        self.verbose = verbose
        self.refresh_per_second = refresh_per_second
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._pump: threading.Thread | None = None
        self._stopping = threading.Event()
        self._board = Board()
        self._lines = _Lines()
        self._pending: list[str] = []

    # -- events (the engine's thread; keep these O(1)-ish and free of I/O) --

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted) and self._live is None:
            self.start()
        with self._lock:
            self._board.apply(event)
            if self.verbose:
                self._queue_output(event)
        if isinstance(event, RunEnded):
            self.stop()

    def _queue_output(self, event: Event) -> None:
        match event:
            case HostOutput():
                lines = self._lines.feed((event.case, event.stage, event.host), event.text)
                self._queue(event.host, lines)
            case HostStageEnded():
                key = (event.case, event.stage, event.result.host)
                self._queue(event.result.host, self._lines.flush(key))

    def _queue(self, host: str, lines: list[str]) -> None:
        self._pending.extend(f"{host}| {line}" for line in lines)

    # -- rendering (Rich's refresh thread) --

    def __rich__(self) -> RenderableType:
        return self.render()

    def render(self) -> RenderableType:
        with self._lock:
            board = self._board.snapshot(now())
        return render_board(board)

    # -- life cycle --

    def start(self) -> None:
        if self._live is not None:
            return
        self._stopping.clear()
        self._live = Live(
            self,
            console=self.console,
            refresh_per_second=self.refresh_per_second,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()
        if self.verbose:
            self._pump = threading.Thread(
                target=self._pump_output, name="phalanx-output", daemon=True
            )
            self._pump.start()

    def stop(self) -> None:
        live, self._live = self._live, None
        if live is None:
            return
        self._stopping.set()
        if self._pump is not None:
            self._pump.join()
            self._pump = None
        self._print_pending(live)
        live.stop()

    def _pump_output(self) -> None:
        # Output goes above the table in batches: one redraw per tick, however
        # much the hosts print.
        while not self._stopping.wait(1 / self.refresh_per_second):
            live = self._live
            if live is not None:
                self._print_pending(live)

    def _print_pending(self, live: Live) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        if lines:
            live.console.print(Text.from_ansi("\n".join(lines)), highlight=False, soft_wrap=True)


def render_board(board: Snapshot) -> RenderableType:
    """The live view: a header, a table of cases by hosts, and while the run
    goes, the last line each host printed."""
    header = Text.assemble(
        ("phalanx ", "bold"),
        (board.suite, "bold cyan"),
        f"  run {board.run_id}  ",
        styled(board.status),
        f"  {duration(board.seconds or 0.0)}",
    )
    current = board.current
    if current is not None:
        where = current.case if current.case is not None else "suite"
        header.append(f"  ▸ {where} {current.stage} ", style="bold")
        header.append(duration(current.seconds or 0.0), style="dim")
    header.append(f"  {board.done}/{len(board.cases)} cases done", style="dim")

    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
    table.add_column("case", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for label in _host_labels(board.hosts):
        table.add_column(label, no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    if board.suite_row is not None:
        table.add_row(
            Text("(suite)", style="dim"),
            Text(""),
            *(_cell(cell) for cell in board.suite_row.cells),
            Text(""),
        )
    for row in board.cases:
        table.add_row(
            row.name,
            styled(row.status),
            *(_cell(cell) for cell in row.cells),
            duration(row.seconds) if row.seconds is not None else "",
        )
    parts: list[RenderableType] = [header, table]
    for host, line in board.last_lines:
        text = Text(f"{host}| ", style="dim")
        text.append_text(Text.from_ansi(line, no_wrap=True, overflow="ellipsis"))
        text.no_wrap, text.overflow = True, "ellipsis"
        parts.append(text)
    return Group(*parts)


def _host_labels(hosts: tuple[str, ...]) -> list[str]:
    """Short names when they tell the hosts apart: the table stays narrow."""
    short = [h.split(".", 1)[0] for h in hosts]
    return short if len(set(short)) == len(short) else list(hosts)


def _cell(cell: Cell | None) -> Text:
    if cell is None:
        return Text("·", style="dim")
    return Text.assemble((f"{cell.stage} ", "dim"), styled(cell.status))


# --- after the run -----------------------------------------------------------


def _details(entry: Entry) -> Text:
    if entry.status is Status.PASSED:
        return Text("")
    if not entry.status.done:
        return Text("did not run", style="dim")
    if entry.problems:
        lines = [p.describe() for p in entry.problems]
        return Text("\n".join(lines))
    return Text(entry.reason or "")


def summary(result: RunResult, console: Console, run_dir: Path | None = None) -> None:
    """One row per case (and per suite stage that did not pass), totals, and
    where the results are."""
    table = Table(
        title=f"{result.suite} · run {result.run_id}",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        pad_edge=False,
    )
    table.add_column("case", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("failing hosts / reason", overflow="fold")
    for entry in entries(result):
        took = duration(entry.seconds) if entry.seconds else ""
        table.add_row(entry.name, styled(entry.status), took, _details(entry))
    console.print(table)
    data = _data_table(result)
    if data is not None:
        console.print(data)
    took = duration(seconds(result.started_at, result.ended_at))
    totals = Text.assemble(
        f"{len(result.cases)} cases: ",
        _tally_text(tally(c.status for c in result.cases)),
        " · run ",
        styled(result.status),
        f" in {took}",
    )
    if result.reason:
        totals.append(f" · {result.reason}")
    console.print(totals)
    if run_dir is not None:
        console.print(Text.assemble("results: ", (str(run_dir), "bold")))


DATA_WIDTH = 160  # longer results are cut here; results.json has them whole


def _data_table(result: RunResult) -> Table | None:
    """What each host's test reported (e.g. Python tests' final_results), if any did."""
    table = Table(title="host results", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    table.add_column("case", no_wrap=True)
    table.add_column("host", no_wrap=True)
    table.add_column("result", overflow="fold")
    for case in result.cases:
        for stage in case.stages:
            for host in stage.hosts:
                if host.data is None:
                    continue
                shown = (
                    host.data.get("final_results", host.data)
                    if isinstance(host.data, dict)
                    else host.data
                )
                text = json.dumps(shown, separators=(", ", ": "), default=str)
                if len(text) > DATA_WIDTH:
                    text = text[: DATA_WIDTH - 1] + "…"
                table.add_row(case.name, host.host, text)
    return table if table.row_count else None


def _tally_text(counts: Tally) -> Text:
    """`tally_text`, each count in its status's color."""
    text = Text()
    for status, n in counts:
        if text:
            text.append(", ")
        text.append(f"{n} {status}", style=STYLES[status])
    return text or Text("none")


def make_console(plain: bool, verbose: bool, stream: TextIO) -> PlainConsole | LiveConsole:
    """A live table on a terminal; plain lines when asked or when the output
    is a pipe or a file (CI logs keep every line)."""
    if plain or not stream.isatty():
        return PlainConsole(stream, verbose=verbose)
    return LiveConsole(Console(file=stream), verbose=verbose)
