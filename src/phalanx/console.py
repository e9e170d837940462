"""What a person sees while a run goes, and after it.

Two sinks read the engine's events: `PlainConsole` writes one line per event
(logs, CI, pipes, `--plain`); `LiveConsole` keeps a Rich table of cases by
hosts up to date on a terminal. `summary` prints the verdict at the end.
Both sinks only record what an event says; anything costly (formatting a
table, splitting output into lines, writing a terminal) happens on a thread
of their own, never in the engine's call: a reader that is slow or gone
never holds the run (see `report/terminal.py`).
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self, TextIO

from phalanx import layout
from phalanx.board import Board, Cell, Elided, Snapshot, Tally, tally, tally_text, window
from phalanx.events import (
    CaseEnded,
    Event,
    HostLogs,
    HostOutput,
    HostStageEnded,
    HostWaiting,
    RunEnded,
    RunStarted,
    StageEnded,
    StageStarted,
    now,
)
from phalanx.model import HostResult, RunResult, Status, seconds
from phalanx.report.hostdata import data_text
from phalanx.report.outcomes import RED, Entry, entries
from phalanx.report.terminal import (
    SafeStream,
    Shown,
    Terminal,
    file_tail,
    plural,
    safe_text,
    shown_path,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

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
WAITING_STYLE = "yellow"

TAIL_LINES = 5  # of a failing host's output, under its failure
ROWS = 24  # cases the live table shows at most (plus a line per stretch left out)
BIG = 30  # cases above which the final table lists only those that did not pass


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
    moment = moment or now()
    second = moment.replace(microsecond=0)
    # A line per host and stage: the local time of a second is worked out
    # once for all the lines within it.
    if _last_second[0] != second:
        _last_second[:] = [second, second.astimezone().strftime("%H:%M:%S.")]
    return f"{_last_second[1]}{moment.microsecond // 1000:03d}"


_last_second: list[object] = [None, ""]


def prefetch_rich() -> threading.Thread:
    """Import Rich in a thread: a plain console prints through it only the
    summary, at the end, and its ~40 ms of imports can go while the run
    waits on its hosts."""

    def load() -> None:
        import rich.console
        import rich.table  # noqa: F401

    thread = threading.Thread(target=load, name="phalanx-rich", daemon=True)
    thread.start()
    return thread


def styled(status: Status) -> Text:
    from rich.text import Text

    return Text(status.value, style=STYLES[status])


def failure_lines(host: HostResult, run_dir: Path | None, tail: bool = True) -> list[str]:
    """What follows a failing host's line: the last lines it printed and
    where its whole output is."""
    if host.output is None or run_dir is None:
        return []
    path = run_dir / host.output
    lines = [f"    | {line}" for line in file_tail(path, TAIL_LINES) or []] if tail else []
    return [*lines, f"    output: {shown_path(path)}"]


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


# --- one line per event ------------------------------------------------------


class PlainConsole(_Started):
    """`12:00:01.123 hello/case_a run srv1.phalanx.test passed (0.42s)`.

    A host's or a stage's line says what its event says; the run's state
    (the suite, a case's row, the tally) comes from the board. A host that
    did not pass is followed by the last lines of its output and the path
    of its output file (`run_dir`: the run folder)."""

    def __init__(self, stream: TextIO, verbose: bool = False, run_dir: Path | None = None) -> None:
        self.terminal = Terminal(stream)
        self.verbose = verbose
        self.run_dir = run_dir
        self.board = Board()

    def __call__(self, event: Event) -> None:
        self.board.apply(event)
        match event:
            case RunStarted():
                self._write(
                    event.at,
                    f"{event.suite} run {event.run_id} started: "
                    f"{plural(len(event.cases), 'case')} on {', '.join(event.hosts)}",
                )
            case StageStarted():
                where = self._where(event.case)
                self._write(event.at, f"{where} {event.stage} started on {', '.join(event.hosts)}")
            case HostOutput():
                if self.verbose:
                    key = (event.case, event.stage, event.host)
                    self.terminal.output(key, f"{event.host}| ", event.data)
            case HostWaiting():
                if self.verbose:
                    where = f"{self._where(event.case)} {event.stage} {event.host}"
                    self._write(event.at, f"{where} waiting in {event.what}")
            case HostStageEnded():
                self._host_ended(event)
            case HostLogs():
                if self.verbose:
                    where = self._where(event.case)
                    count = plural(len(event.files), "log")
                    self._write(None, f"{where} {event.stage} {event.host} collected {count}")
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

    def _host_ended(self, event: HostStageEnded) -> None:
        result = event.result
        if self.verbose:
            self.terminal.end((event.case, event.stage, result.host), f"{result.host}| ")
        took = seconds(result.started_at, result.ended_at)
        line = f"{self._where(event.case)} {event.stage} {result.host} {result.status}"
        line += f" ({duration(took)})" + (f": {result.reason}" if result.reason else "")
        more = [] if result.status.ok else failure_lines(result, self.run_dir, not self.verbose)
        self._write(result.ended_at, line, more)

    def _where(self, case: str | None) -> str:
        suite = self.board.suite
        return suite if case is None else f"{suite}/{case}"

    def _write(self, moment: datetime | None, line: str, more: list[str] | None = None) -> None:
        text = f"{_clock(moment)} {safe_text(line)}\n"
        self.terminal.line(text + "".join(f"{m}\n" for m in more or ()))

    def start(self) -> None:
        """Nothing to start; here so both consoles are used the same way."""

    def stop(self) -> None:
        self.terminal.close()


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
        self._shown = Shown()

    # -- events (the engine's thread; keep these O(1)-ish and free of I/O) --

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted) and self._live is None:
            self.start()
        with self._lock:
            self._board.apply(event)
        if self.verbose:
            match event:
                case HostOutput():
                    key = (event.case, event.stage, event.host)
                    self._shown.output(key, f"{event.host}| ", event.data)
                case HostStageEnded():
                    host = event.result.host
                    self._shown.end((event.case, event.stage, host), f"{host}| ")
        if isinstance(event, RunEnded):
            self.stop()

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
        from rich.live import Live

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
        # much the hosts print; what Rich cannot keep up with is skipped, and
        # counted (Shown's backlog).
        while not self._stopping.wait(1 / self.refresh_per_second):
            live = self._live
            if live is not None:
                self._print_pending(live)

    def _print_pending(self, live: Live) -> None:
        from rich.text import Text

        text = self._shown.take()
        if text:
            live.console.print(Text(text.removesuffix("\n")), highlight=False, soft_wrap=True)


def render_board(board: Snapshot, rows: int = ROWS) -> RenderableType:
    """The live view: a header, a table of cases by hosts (the running case
    and every failure kept in view when there are more than `rows`), and
    while the run goes, the last line each host printed."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

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
    header.append(f"  {board.done}/{plural(len(board.cases), 'case')} done", style="dim")

    hosts = _host_labels(board.hosts)
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
    table.add_column("case", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for label in hosts:
        table.add_column(label, no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    if board.suite_row is not None:
        table.add_row(
            Text("(suite)", style="dim"),
            Text(""),
            *(_cell(cell) for cell in board.suite_row.cells),
            Text(""),
        )
    for row in window(board.cases, rows):
        if isinstance(row, Elided):
            table.add_row(Text(f"… {_elided(row)}", style="dim"), *[""] * (len(hosts) + 2))
            continue
        table.add_row(
            row.name,
            styled(row.status),
            *(_cell(cell) for cell in row.cells),
            duration(row.seconds) if row.seconds is not None else "",
        )
    parts: list[RenderableType] = [header, table]
    for host, line in board.last_lines:
        text = Text(f"{host}| ", style="dim")
        text.append(safe_text(line).replace("\n", " "))
        text.no_wrap, text.overflow = True, "ellipsis"
        parts.append(text)
    return Group(*parts)


def _elided(rows: Elided) -> str:
    """`37 more passed`; `12 more: 10 passed, 2 skipped`."""
    if len(rows.tally) == 1:
        return f"{rows.count} more {rows.tally[0][0].value}"
    return f"{rows.count} more: {tally_text(rows.tally)}"


def _host_labels(hosts: tuple[str, ...]) -> list[str]:
    """Short names when they tell the hosts apart: the table stays narrow."""
    short = [h.split(".", 1)[0] for h in hosts]
    return short if len(set(short)) == len(short) else list(hosts)


def _cell(cell: Cell | None) -> Text:
    from rich.text import Text

    if cell is None:
        return Text("·", style="dim")
    if cell.waiting is not None:
        return Text.assemble((f"{cell.stage} ", "dim"), ("waiting", WAITING_STYLE))
    return Text.assemble((f"{cell.stage} ", "dim"), styled(cell.status))


# --- after the run -----------------------------------------------------------


def _details(entry: Entry, run_dir: Path | None) -> Text:
    from rich.text import Text

    if entry.status is Status.PASSED:
        return Text("")
    if not entry.status.done:
        return Text("did not run", style="dim")
    if entry.problems:
        lines: list[str] = []
        for problem in entry.problems:
            lines.append(problem.describe())
            if problem.host is not None and problem.status in RED:
                lines += failure_lines(problem.host, run_dir)
        return Text(safe_text("\n".join(lines)))
    return Text(safe_text(entry.reason or ""))


def summary(result: RunResult, console: Console, run_dir: Path | None = None) -> None:
    """One row per case (and per suite stage that did not pass), totals, and
    where the results are. A big suite lists only what did not pass."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    listed = entries(result)
    big = len(result.cases) > BIG
    shown = [e for e in listed if e.status is not Status.PASSED] if big else listed
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
    for entry in shown:
        took = duration(entry.seconds) if entry.seconds else ""
        table.add_row(entry.name, styled(entry.status), took, _details(entry, run_dir))
    if shown:
        console.print(table)
    if big:
        passed = len(listed) - len(shown)
        console.print(
            Text(
                f"{plural(passed, 'case')} passed, not listed"
                + (" (results.json has every case)" if passed else ""),
                style="dim",
            )
        )
    data = _data_table(result)
    if data is not None:
        console.print(data)
    took = duration(seconds(result.started_at, result.ended_at))
    totals = Text.assemble(
        f"{plural(len(result.cases), 'case')}: ",
        _tally_text(tally(c.status for c in result.cases)),
        " · run ",
        styled(result.status),
        f" in {took}",
    )
    if result.reason:
        totals.append(f" · {result.reason}")
    console.print(totals)
    if run_dir is not None:
        console.print(Text.assemble("results: ", (shown_path(run_dir), "bold")))
        page = run_dir / layout.REPORT_HTML
        if page.is_file():  # a run that could not write it still says where the rest is
            console.print(Text.assemble("report:  ", (shown_path(page), "bold")))


DATA_WIDTH = 160  # longer results are cut here; results.json has them whole


def _data_table(result: RunResult) -> Table | None:
    """What each host's test reported (e.g. Python tests' final_results), if any did."""
    from rich import box
    from rich.table import Table

    table = Table(title="host results", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    table.add_column("case", no_wrap=True)
    table.add_column("host", no_wrap=True)
    table.add_column("result", overflow="fold")
    for case in result.cases:
        for stage in case.stages:
            for host in stage.hosts:
                if host.data is None:
                    continue
                lines = data_text(host.data).splitlines() or [""]
                text = "\n".join(
                    line if len(line) <= DATA_WIDTH else line[: DATA_WIDTH - 1] + "…"
                    for line in lines
                )
                table.add_row(case.name, host.host, safe_text(text))
    return table if table.row_count else None


def _tally_text(counts: Tally) -> Text:
    """`tally_text`, each count in its status's color."""
    from rich.text import Text

    text = Text()
    for status, n in counts:
        if text:
            text.append(", ")
        text.append(f"{n} {status}", style=STYLES[status])
    return text or Text("none")


# A pipe or a file has no width; Rich would take 80 columns and cut a path
# mid-word where a CI log or `grep` wants it whole. Tables take only the
# width their cells need, so this is a ceiling, not a padding.
PIPE_WIDTH = 4096


def terminal_console(stream: TextIO) -> Console:
    """A Rich console on `stream` that goes quiet when its reader is gone;
    on a pipe or a file, as wide as its lines are (COLUMNS still rules)."""
    from rich.console import Console

    return Console(file=SafeStream(stream), width=pipe_width(stream))  # type: ignore[arg-type]


def pipe_width(stream: TextIO) -> int | None:
    """The width for a console on `stream`: None (Rich asks the terminal or
    COLUMNS) on a terminal or when COLUMNS is set, else `PIPE_WIDTH`."""
    if os.environ.get("COLUMNS") or _isatty(stream):
        return None
    return PIPE_WIDTH


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or a stand-in without it
        return False


def make_console(
    plain: bool, verbose: bool, stream: TextIO, run_dir: Path | None = None
) -> PlainConsole | LiveConsole:
    """A live table on a terminal; plain lines when asked or when the output
    is a pipe or a file (CI logs keep every line)."""
    if plain or not stream.isatty():
        prefetch_rich()  # for the summary
        return PlainConsole(stream, verbose=verbose, run_dir=run_dir)
    return LiveConsole(terminal_console(stream), verbose=verbose)
