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
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

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
from phalanx.model import RunResult, Status, worst
from phalanx.report.outcomes import Entry, entries, seconds

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


def _tally(statuses: list[Status]) -> str:
    counts = Counter(statuses)
    return ", ".join(f"{counts[s]} {s}" for s in Status if counts[s])


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
    """`12:00:01.123 hello/case_a run srv1.phalanx.test passed (0.42s)`."""

    def __init__(self, stream: TextIO, verbose: bool = False) -> None:
        self.stream = stream
        self.verbose = verbose
        self._suite = ""
        self._lines = _Lines()

    def __call__(self, event: Event) -> None:
        match event:
            case RunStarted():
                self._suite = event.suite
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
                case = event.result
                line = f"{self._where(case.name)} case {case.status}"
                if case.started_at is not None:
                    line += f" ({duration(seconds(case.started_at, case.ended_at))})"
                self._write(case.ended_at, line + (f": {case.reason}" if case.reason else ""))
            case RunEnded():
                run = event.result
                run_took = duration(seconds(run.started_at, run.ended_at))
                line = f"{run.suite} run {run.run_id} {run.status} ({run_took})"
                line += f": {_tally([c.status for c in run.cases]) or 'no cases'}"
                self._write(run.ended_at, line + (f"; {run.reason}" if run.reason else ""))

    def _where(self, case: str | None) -> str:
        return self._suite if case is None else f"{self._suite}/{case}"

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

    Events only update dictionaries under a lock; Rich's refresh thread
    builds the table from a snapshot. Starts on RunStarted and stops on
    RunEnded if nobody did it first; `with LiveConsole(...)` also works and
    guarantees the terminal is restored if the run blows up.
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
        self._lines = _Lines()
        self._pending: list[str] = []
        self._suite = ""
        self._run_id = ""
        self._hosts: list[str] = []
        self._cases: list[str] = []
        self._known_cases: set[str] = set()
        self._suite_row = False
        self._cells: dict[tuple[str | None, str], tuple[str, Status]] = {}
        self._settled: dict[tuple[str | None, str], tuple[str, Status]] = {}
        self._case_status: dict[str, Status] = {}
        self._case_seconds: dict[str, float] = {}
        self._current: tuple[str | None, str] | None = None
        self._stage_since = 0.0
        self._run_since: float | None = None
        self._run_took: float | None = None
        self._run_status = Status.PENDING
        self._last_line: dict[str, str] = {}

    # -- events (the engine's thread; keep these O(1)-ish and free of I/O) --

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted) and self._live is None:
            self.start()
        with self._lock:
            self._record(event)
        if isinstance(event, RunEnded):
            self.stop()

    def _record(self, event: Event) -> None:
        match event:
            case RunStarted():
                self._reset()
                self._suite, self._run_id = event.suite, event.run_id
                self._hosts = list(event.hosts)
                self._cases = list(event.cases)
                self._known_cases = set(event.cases)
                self._run_since = time.monotonic()
                self._run_status = Status.RUNNING
            case StageStarted():
                self._see_case(event.case)
                self._current = (event.case, event.stage)
                self._stage_since = time.monotonic()
                for host in event.hosts:
                    self._cells[(event.case, host)] = (event.stage, Status.RUNNING)
                    self._last_line.pop(host, None)  # a new stage: old output would mislead
                if event.case is not None:
                    self._case_status[event.case] = Status.RUNNING
            case HostOutput():
                self._output(event)
            case HostStageEnded():
                self._settle((event.case, event.result.host), event.stage, event.result.status)
                if self.verbose:
                    key = (event.case, event.stage, event.result.host)
                    self._queue(event.result.host, self._lines.flush(key))
            case StageEnded():
                self._see_case(event.case)
                for ended in event.result.hosts:
                    self._settle((event.case, ended.host), event.result.name, ended.status)
                if self._current == (event.case, event.result.name):
                    self._current = None
            case CaseEnded():
                case = event.result
                self._see_case(case.name)
                self._case_status[case.name] = case.status
                if case.started_at is not None:
                    self._case_seconds[case.name] = seconds(case.started_at, case.ended_at)
            case RunEnded():
                self._run_status = event.result.status
                self._current = None
                if self._run_since is not None:
                    self._run_took = time.monotonic() - self._run_since
            case HostLogs():
                pass

    def _settle(self, key: tuple[str | None, str], stage: str, status: Status) -> None:
        """A finished cell shows the worst stage the host had in that case,
        so `initialize failed` is not hidden by the `run skipped` after it."""
        before = self._settled.get(key)
        if before is None or worst([before[1], status]) is status:
            self._settled[key] = (stage, status)
        self._cells[key] = self._settled[key]

    def _reset(self) -> None:
        self._cells.clear()
        self._settled.clear()
        self._case_status.clear()
        self._case_seconds.clear()
        self._last_line.clear()
        self._suite_row = False
        self._current = None
        self._run_took = None

    def _see_case(self, case: str | None) -> None:
        if case is None:
            self._suite_row = True
        elif case not in self._known_cases:
            self._known_cases.add(case)
            self._cases.append(case)

    def _output(self, event: HostOutput) -> None:
        last = event.text.rstrip("\r\n").rpartition("\n")[2]
        if last.strip():
            self._last_line[event.host] = last
        if self.verbose:
            lines = self._lines.feed((event.case, event.stage, event.host), event.text)
            self._queue(event.host, lines)

    def _queue(self, host: str, lines: list[str]) -> None:
        self._pending.extend(f"{host}| {line}" for line in lines)

    # -- rendering (Rich's refresh thread) --

    def __rich__(self) -> RenderableType:
        return self.render()

    def render(self) -> RenderableType:
        with self._lock:
            cells = dict(self._cells)
            case_status = dict(self._case_status)
            case_seconds = dict(self._case_seconds)
            cases = list(self._cases)
            hosts = list(self._hosts)
            for _, host in cells:
                if host not in hosts:
                    hosts.append(host)
            last_lines = dict(self._last_line)
            current, stage_since = self._current, self._stage_since
            run_since, run_took, run_status = self._run_since, self._run_took, self._run_status
            suite_row = self._suite_row
        clock = time.monotonic()
        elapsed = run_took if run_took is not None else clock - (run_since or clock)

        header = Text.assemble(
            ("phalanx ", "bold"),
            (self._suite, "bold cyan"),
            f"  run {self._run_id}  ",
            styled(run_status),
            f"  {duration(elapsed)}",
        )
        if current is not None:
            where = current[0] if current[0] is not None else "suite"
            header.append(f"  ▸ {where} {current[1]} ", style="bold")
            header.append(duration(clock - stage_since), style="dim")
        done = sum(1 for c in cases if case_status.get(c, Status.PENDING).done)
        header.append(f"  {done}/{len(cases)} cases done", style="dim")

        table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
        table.add_column("case", no_wrap=True)
        table.add_column("status", no_wrap=True)
        for label in _host_labels(hosts):
            table.add_column(label, no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
        if suite_row:
            table.add_row(
                Text("(suite)", style="dim"),
                Text(""),
                *(_cell(cells.get((None, h))) for h in hosts),
                Text(""),
            )
        for case in cases:
            status = case_status.get(case, Status.PENDING)
            took = case_seconds.get(case)
            table.add_row(
                case,
                styled(status),
                *(_cell(cells.get((case, h))) for h in hosts),
                duration(took) if took is not None else "",
            )
        parts: list[RenderableType] = [header, table]
        if run_took is None:
            for host in hosts:
                line = last_lines.get(host)
                if line:
                    text = Text(f"{host}| ", style="dim")
                    text.append_text(Text.from_ansi(line, no_wrap=True, overflow="ellipsis"))
                    text.no_wrap, text.overflow = True, "ellipsis"
                    parts.append(text)
        return Group(*parts)

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


def _host_labels(hosts: list[str]) -> list[str]:
    """Short names when they tell the hosts apart: the table stays narrow."""
    short = [h.split(".", 1)[0] for h in hosts]
    return short if len(set(short)) == len(short) else hosts


def _cell(value: tuple[str, Status] | None) -> Text:
    if value is None:
        return Text("·", style="dim")
    stage, status = value
    return Text.assemble((f"{stage} ", "dim"), styled(status))


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
        _tally_text([c.status for c in result.cases]),
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


def _tally_text(statuses: list[Status]) -> Text:
    counts = Counter(statuses)
    text = Text()
    for status in Status:
        if counts[status]:
            if text:
                text.append(", ")
            text.append(f"{counts[status]} {status}", style=STYLES[status])
    return text or Text("none")


def make_console(plain: bool, verbose: bool, stream: TextIO) -> PlainConsole | LiveConsole:
    """A live table on a terminal; plain lines when asked or when the output
    is a pipe or a file (CI logs keep every line)."""
    if plain or not stream.isatty():
        return PlainConsole(stream, verbose=verbose)
    return LiveConsole(Console(file=stream), verbose=verbose)
