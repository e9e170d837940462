from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from phalanx.console import LiveConsole, PlainConsole, duration, make_console, summary
from phalanx.events import (
    CaseEnded,
    CaseRecord,
    Event,
    HostLogs,
    HostOutput,
    HostStageEnded,
    RunEnded,
    RunRecord,
    RunStarted,
    StageEnded,
    StageRecord,
    StageStarted,
)
from phalanx.model import CaseResult, HostResult, RunResult, StageResult, Status, worst

SRV1, SRV2 = "srv1.phalanx.test", "srv2.phalanx.test"
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][AB0-2]")
_TIME = r"\d\d:\d\d:\d\d\.\d\d\d"


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def plain(text: str) -> str:
    return _ANSI.sub("", text)


class Script:
    """Builds the event sequence the engine emits for a small run, and the
    RunResult it ends with."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.clock = 0.0
        self.result = RunResult(
            run_id="run-7",
            suite="hello",
            cluster="c",
            hosts=[SRV1, SRV2],
            status=Status.RUNNING,
            started_at=at(0),
            cases=[CaseResult(name=n) for n in ("case_a", "case_b", "case_c")],
        )

    def stage(
        self,
        case: str | None,
        name: str,
        outcomes: dict[str, tuple[Status, int | None, str | None]],
        output: dict[str, list[str]] | None = None,
    ) -> StageResult:
        start = self.clock
        self.events.append(StageStarted(case, name, tuple(outcomes), at(start)))
        for host, chunks in (output or {}).items():
            self.events.extend(HostOutput(case, name, host, chunk.encode()) for chunk in chunks)
        hosts = []
        for i, (host, (status, code, reason)) in enumerate(outcomes.items()):
            result = HostResult(
                host=host,
                status=status,
                exit_code=code,
                reason=reason,
                started_at=at(start),
                ended_at=at(start + 0.42 + i),
            )
            hosts.append(result)
            self.events.append(HostStageEnded(case, name, result))
        self.clock = start + 0.42 + len(outcomes)
        stage = StageResult(
            name=name,
            status=worst([h.status for h in hosts]),
            hosts=hosts,
            started_at=at(start),
            ended_at=at(self.clock),
        )
        self.events.append(StageEnded(case, StageRecord.of(stage)))
        return stage

    def case(self, index: int, stages: list[StageResult], reason: str | None = None) -> None:
        case = self.result.cases[index]
        case.stages = stages
        case.status = worst([s.status for s in stages])
        case.reason = reason
        case.started_at = stages[0].started_at
        case.ended_at = stages[-1].ended_at
        self.events.append(CaseEnded(CaseRecord.of(case)))


PASS = (Status.PASSED, 0, None)


def scripted_run() -> Script:
    s = Script()
    s.events.append(RunStarted("run-7", "hello", (SRV1, SRV2), ("case_a", "case_b", "case_c")))
    s.result.stages.append(s.stage(None, "initialize", {SRV1: PASS, SRV2: PASS}))
    s.case(
        0,
        [
            s.stage("case_a", "initialize", {SRV1: PASS, SRV2: PASS}),
            s.stage(
                "case_a",
                "run",
                {SRV1: PASS, SRV2: PASS},
                {SRV1: ["hello fr", "om srv1\nsecond ", "line"], SRV2: ["\x1b[32mgreen\x1b[0m\n"]},
            ),
        ],
    )
    s.case(
        1,
        [
            s.stage(
                "case_b",
                "run",
                {SRV1: (Status.FAILED, 1, "exit code 1"), SRV2: PASS},
                {SRV1: ["boom\x00\x07\n"]},
            )
        ],
        reason="run failed: srv1.phalanx.test (exit code 1)",
    )
    s.events.append(HostLogs("case_b", "run", SRV1, (("cases/case_b/run/logs/x", b"log"),)))
    s.case(
        2, [s.stage("case_c", "run", {SRV1: (Status.TIMEOUT, -9, "stage timed out"), SRV2: PASS})]
    )
    s.result.stages.append(s.stage(None, "finalize", {SRV1: PASS, SRV2: PASS}))
    s.result.status = Status.TIMEOUT
    s.result.ended_at = at(s.clock)
    s.events.append(RunEnded(RunRecord.of(s.result)))
    return s


def feed(sink: PlainConsole | LiveConsole, events: list[Event]) -> None:
    for event in events:
        sink(event)


def test_plain_console_writes_one_line_per_event() -> None:
    stream = io.StringIO()
    feed(PlainConsole(stream), scripted_run().events)
    lines = stream.getvalue().splitlines()
    assert all(re.match(_TIME + " ", line) for line in lines)
    bodies = [line.split(" ", 1)[1] for line in lines]
    assert bodies[0] == "hello run run-7 started: 3 cases on srv1.phalanx.test, srv2.phalanx.test"
    assert bodies[1] == "hello initialize started on srv1.phalanx.test, srv2.phalanx.test"
    assert "hello initialize srv1.phalanx.test passed (0.42s)" in bodies
    assert "hello/case_a run srv2.phalanx.test passed (1.42s)" in bodies
    assert "hello/case_b run srv1.phalanx.test failed (0.42s): exit code 1" in bodies
    assert "hello/case_b run failed (2.42s): exit code 1" in bodies
    assert "hello/case_b case failed (2.42s): run failed: srv1.phalanx.test (exit code 1)" in bodies
    assert "hello/case_c run srv1.phalanx.test timeout (0.42s): stage timed out" in bodies
    assert bodies[-1].startswith("hello run run-7 timeout (")
    assert bodies[-1].endswith("): 1 passed, 1 failed, 1 timeout")
    assert not any("|" in line for line in lines)  # output only when verbose
    assert not any("collected" in line for line in lines)


def test_plain_console_time_is_the_event_time() -> None:
    stream = io.StringIO()
    PlainConsole(stream)(RunStarted("r", "s", ("h",), ("c",), at=T0))
    assert stream.getvalue().startswith(T0.astimezone().strftime("%H:%M:%S.123 "))


def test_plain_console_verbose_shows_whole_output_lines() -> None:
    stream = io.StringIO()
    feed(PlainConsole(stream, verbose=True), scripted_run().events)
    lines = stream.getvalue().splitlines()
    output = [line for line in lines if "| " in line and not re.match(_TIME, line)]
    assert output[:3] == [
        "srv1.phalanx.test| hello from srv1",
        "srv2.phalanx.test| green",  # escape sequences never reach the terminal
        "srv1.phalanx.test| second line",  # the unfinished line, at the host's end
    ]
    first_end = next(
        i for i, line in enumerate(lines) if "case_a run srv1.phalanx.test passed" in line
    )
    assert lines[first_end - 1] == "srv1.phalanx.test| second line"
    assert "srv1.phalanx.test| boom\\x00\\x07" in lines  # no raw NUL or BEL in a log
    assert any(
        line.endswith("hello/case_b run srv1.phalanx.test collected 1 log") for line in lines
    )


class FlushCounter(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_plain_console_flushes_every_line() -> None:
    stream = FlushCounter()
    events = scripted_run().events
    feed(PlainConsole(stream), events)
    assert stream.flushes == len(stream.getvalue().splitlines())


def live_console(verbose: bool = False) -> tuple[LiveConsole, io.StringIO]:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    return LiveConsole(console, verbose=verbose, refresh_per_second=20), buffer


def render(live: LiveConsole) -> str:
    out = Console(file=io.StringIO(), width=120, color_system=None)
    with out.capture() as captured:
        out.print(live.render())
    return captured.get()


def test_live_console_final_render_shows_cases_hosts_and_statuses() -> None:
    live, buffer = live_console()
    feed(live, scripted_run().events)  # RunStarted starts it, RunEnded stops it
    final = plain(buffer.getvalue()).rsplit("phalanx hello", 1)[1]
    assert "run run-7" in final and "timeout" in final
    assert "3/3 cases done" in final
    for word in ("case_a", "case_b", "case_c", "srv1", "srv2", "(suite)"):
        assert word in final
    rows = {line.split()[0]: line for line in final.splitlines() if line.strip()}
    assert rows["case_a"].split()[1] == "passed"
    assert "run failed" in rows["case_b"] and "run passed" in rows["case_b"]
    assert rows["case_b"].split()[1] == "failed"
    assert rows["case_c"].split()[1] == "timeout"
    assert "finalize passed" in rows["(suite)"]
    assert "\x1b[" in buffer.getvalue()  # colored on a terminal


def test_live_console_while_running() -> None:
    live, _ = live_console()
    events = scripted_run().events
    mid = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, StageStarted) and e.case == "case_b" and e.stage == "run"
    )
    with live:
        feed(live, events[: mid + 2])  # case_b's run started, srv1 printed "boom"
        view = render(live)
    assert "▸ case_b run" in view
    assert "1/3 cases done" in view
    rows = {line.split()[0]: line for line in view.splitlines() if line.strip()}
    assert rows["case_b"].split()[1:] == ["running", "run", "running", "run", "running"]
    assert rows["case_c"].split()[1:] == ["pending", "·", "·"]
    assert "srv1.phalanx.test| boom" in view
    assert "green" not in view  # srv2's last line was from the stage before


def test_live_console_verbose_prints_output_above_the_table() -> None:
    live, buffer = live_console(verbose=True)
    feed(live, scripted_run().events)
    text = plain(buffer.getvalue())
    assert "srv1.phalanx.test| hello from srv1" in text
    assert "srv1.phalanx.test| second line" in text
    assert "srv2.phalanx.test| green" in text


def test_live_console_event_handling_is_cheap() -> None:
    live, _ = live_console()
    live(RunStarted("r", "s", (SRV1,), ("c",)))
    try:
        chunk = HostOutput("c", "run", SRV1, b"x" * 100 + b"\n")
        import time

        start = time.perf_counter()
        for _ in range(20_000):
            live(chunk)
        assert time.perf_counter() - start < 1.0
    finally:
        live.stop()


def finished_run() -> RunResult:
    return scripted_run().result


def test_summary_lists_cases_failing_hosts_totals_and_folder(tmp_path: Path) -> None:
    result = finished_run()
    result.stages[0].status = Status.ERROR
    result.stages[0].hosts[1] = replace(
        result.stages[0].hosts[1], status=Status.ERROR, reason="agent lost"
    )
    result.cases.append(CaseResult(name="case_d", status=Status.SKIPPED, reason="needs ipv6"))
    out = Console(file=io.StringIO(), width=120)
    with out.capture() as captured:
        summary(result, out, tmp_path / "phalanx-results" / "run-7")
    text = captured.get()
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert rows["case_a"].split()[1] == "passed"
    assert rows["case_b"].split()[1] == "failed"
    assert "run on srv1.phalanx.test: failed (exit code 1)" in rows["case_b"]
    assert rows["case_c"].split()[1] == "timeout"
    assert rows["case_d"].split()[1] == "skipped" and "needs ipv6" in rows["case_d"]
    assert "initialize on srv2.phalanx.test: error (agent lost)" in rows["suite.initialize"]
    assert "suite.finalize" not in rows
    assert "4 cases: 1 passed, 1 failed, 1 skipped, 1 timeout · run timeout in" in text
    assert f"results: {tmp_path / 'phalanx-results' / 'run-7'}" in text


def test_durations_read_well() -> None:
    assert [duration(x) for x in (0.421, 59.999, 62, 3723)] == [
        "0.42s",
        "1m00s",
        "1m02s",
        "1h02m03s",
    ]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_make_console_chooses_plain_unless_on_a_terminal() -> None:
    assert isinstance(make_console(plain=False, verbose=False, stream=io.StringIO()), PlainConsole)
    assert isinstance(make_console(plain=True, verbose=False, stream=Tty()), PlainConsole)
    chosen = make_console(plain=False, verbose=True, stream=Tty())
    assert isinstance(chosen, LiveConsole) and chosen.verbose
    assert chosen.console.is_terminal


def test_live_cell_keeps_the_stage_that_went_wrong() -> None:
    s = Script()
    s.events.append(RunStarted("run-7", "hello", (SRV1, SRV2), ("case_a",)))
    failed = (Status.FAILED, 3, "exit code 3")
    init = s.stage("case_a", "initialize", {SRV1: failed, SRV2: PASS})
    skipped = StageResult(
        name="run",
        status=Status.SKIPPED,
        hosts=[
            HostResult(host=h, status=Status.SKIPPED, reason="case initialize did not pass")
            for h in (SRV1, SRV2)
        ],
    )
    s.events.append(StageEnded("case_a", StageRecord.of(skipped)))
    s.case(0, [init, skipped, s.stage("case_a", "finalize", {SRV1: PASS, SRV2: PASS})])
    live, _ = live_console()
    feed(live, s.events)
    rows = {line.split()[0]: line for line in render(live).splitlines() if line.strip()}
    assert rows["case_a"].split()[1:6] == ["failed", "initialize", "failed", "finalize", "passed"]
    live.stop()


def test_summary_prints_what_each_host_reported() -> None:
    result = finished_run()
    case = result.cases[0]
    run_stage = case.stages[-1]
    run_stage.hosts[0] = replace(
        run_stage.hosts[0], data={"final_results": {"tests:Echo": {"rtt_us": 25.7}}}
    )
    out = Console(file=io.StringIO(), width=120)
    with out.capture() as captured:
        summary(result, out)
    text = captured.get()
    assert "host results" in text
    line = next(ln for ln in text.splitlines() if "tests:Echo: rtt_us: 25.7" in ln)
    assert '"rtt_us"' not in text  # words, not JSON (issue 23, item 10)
    assert case.name in line and run_stage.hosts[0].host in line
    without = finished_run()
    with out.capture() as captured:
        summary(without, out)
    assert "host results" not in captured.get()


# --- output made fit for a terminal (report/terminal.py) ----------------------------


def test_a_line_longer_than_a_screen_is_cut_with_its_size_whatever_the_pieces() -> None:
    from phalanx.report.terminal import LINE_SHOWN, Lines

    lines = Lines()
    piece = b"x" * (64 * 1024)
    shown = "".join(lines.feed("k", piece) for _ in range(800))  # 50 MiB, no newline yet
    assert shown == ""
    shown = lines.feed("k", b"xx\nnext\n")
    first, second = shown.splitlines()
    assert first == "x" * LINE_SHOWN + f"… [{800 * 64 * 1024 + 2:,} bytes]"
    assert second == "next"
    # Cut whole lines inside one piece too, and the unfinished one at the end.
    shown = lines.feed("j", b"a" * 1000 + b"\nshort\n" + b"b" * 500)
    assert shown.splitlines() == ["a" * LINE_SHOWN + "… [1,000 bytes]", "short"]
    assert lines.flush("j") == "b" * LINE_SHOWN + "… [500 bytes]\n"


def test_output_reaches_a_terminal_without_escapes_or_controls() -> None:
    from phalanx.report.terminal import Lines

    lines = Lines()
    raw = (
        b"\x1b]0;PWNED\x07title \x1b[31mred\x1b[0m\ttab\r\n"
        b"10%\r20%\r30%\n"
        b"bell\x07 nul\x00 \x1bc reset \xc2\x9b2J c1 \xc2\x9d0;X\xc2\x9c end\n"
        b"caf\xe9 \xff\n"
    )
    shown = lines.feed("k", raw)
    assert shown.splitlines() == [
        "title red\ttab",
        "30%",  # what a terminal would show after its carriage returns
        "bell\\x07 nul\\x00  reset  c1  end",
        "caf\ufffd \ufffd",
    ]
    assert "\x1b" not in shown and "PWNED" not in shown
    # Binary junk: every control a dot, never a raw byte.
    junk = Lines().feed("b", bytes(range(256)) * 16 + b"\n")
    assert not any(ord(c) < 32 and c not in "\n\t" for c in junk)


def test_a_character_cut_between_pieces_is_shown_whole() -> None:
    from phalanx.report.terminal import Lines

    lines = Lines()
    assert lines.feed("k", b"caf\xc3") == ""
    assert lines.feed("k", b"\xa9\n") == "café\n"


def test_a_terminal_whose_reader_is_gone_goes_quiet(tmp_path: Path) -> None:
    import os

    from phalanx.report.terminal import Terminal

    read, write = os.pipe()
    stream = os.fdopen(write, "w")
    terminal = Terminal(stream)
    terminal.line("first\n")
    terminal.drain()
    assert os.read(read, 100) == b"first\n"
    os.close(read)  # the reader leaves (| head)
    for i in range(100):
        terminal.line(f"line {i}\n")
        terminal.output("k", "h| ", b"output\n" * 1000)
    terminal.drain()
    terminal.close()
    assert terminal.quiet
    stream.write("more\n")
    stream.flush()  # its descriptor now points at /dev/null: no BrokenPipeError


def test_a_slow_reader_skips_output_and_says_how_much_but_keeps_every_status_line() -> None:
    from phalanx.report.terminal import Shown

    shown = Shown(backlog=1000)
    shown.line("status 1\n")
    for _ in range(10):
        shown.output("k", "h| ", b"y" * 299 + b"\n")
    shown.line("status 2\n")
    shown.end("k", "h| ")
    text = shown.take()
    assert text.count("h| yyy") == 4  # 4 x 300 bytes waited; the rest was counted
    assert "status 1" in text and "status 2" in text
    assert "h| … 1,800 bytes of output not shown here" in text


def test_plain_console_shows_a_failing_hosts_last_lines_and_output_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "phalanx-results" / "run-7"
    out = run_dir / "cases/c/run/srv1.log"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"".join(b"line %d\n" % i for i in range(1, 11)) + b"\x1b[31mboom\x1b[0m")
    stream = io.StringIO()
    console = PlainConsole(stream, run_dir=run_dir)
    console(RunStarted("run-7", "s", (SRV1,), ("c",)))
    failed = HostResult(
        host=SRV1,
        status=Status.FAILED,
        exit_code=1,
        reason="exit code 1",
        output="cases/c/run/srv1.log",
        started_at=at(0),
        ended_at=at(1),
    )
    console(HostStageEnded("c", "run", failed))
    lines = stream.getvalue().splitlines()
    at_failure = next(i for i, line in enumerate(lines) if "srv1.phalanx.test failed" in line)
    assert lines[at_failure + 1 :] == [
        "    | line 7",
        "    | line 8",
        "    | line 9",
        "    | line 10",
        "    | boom",
        "    output: phalanx-results/run-7/cases/c/run/srv1.log",  # relative to the cwd
    ]
    assert "1 case on" in lines[0]


def many_cases(n: int, failed: set[int], running: int | None) -> list[Event]:
    names = tuple(f"case_{i:03d}" for i in range(n))
    events: list[Event] = [RunStarted("r", "big", (SRV1,), names)]
    ended = running if running is not None else n
    for i, name in enumerate(names[: ended + 1 if running is not None else n]):
        events.append(StageStarted(name, "run", (SRV1,), at(i)))
        if i == running:
            break
        status = Status.FAILED if i in failed else Status.PASSED
        host = HostResult(host=SRV1, status=status, started_at=at(i), ended_at=at(i + 0.5))
        events.append(HostStageEnded(name, "run", host))
        stage = StageResult(name="run", status=status, hosts=[host], started_at=at(i))
        stage.ended_at = at(i + 0.5)
        events.append(StageEnded(name, StageRecord.of(stage)))
        case = CaseResult(name=name, status=status, stages=[stage])
        case.started_at, case.ended_at = at(i), at(i + 0.5)
        events.append(CaseEnded(CaseRecord.of(case)))
    return events


def test_the_live_view_of_200_cases_follows_the_running_case_and_keeps_failures() -> None:
    from phalanx.board import fold
    from phalanx.console import render_board

    out = Console(file=io.StringIO(), width=120, color_system=None)
    with out.capture() as captured:
        out.print(render_board(fold(many_cases(200, {3, 77}, running=150), at(200))))
    view = captured.get()
    rows = [line.split()[0] for line in view.splitlines() if line.strip().startswith("case_")]
    assert "case_150" in rows and "case_003" in rows and "case_077" in rows
    assert len(rows) <= 26
    assert "… 3 more passed" in view  # case_000..002
    assert "… 73 more passed" in view  # between the two failures
    assert "more pending" in view
    assert "151/200 cases done" not in view and "150/200 cases done" in view


def test_a_big_suites_summary_lists_only_what_did_not_pass() -> None:
    from phalanx.board import fold

    events = many_cases(40, {5, 30}, running=None)
    board = fold(events)
    assert board.done == 40
    result = RunResult(run_id="r", suite="big", hosts=[SRV1], status=Status.FAILED)
    result.started_at, result.ended_at = at(0), at(40)
    for event in events:
        if isinstance(event, CaseEnded):
            record = event.result
            case = CaseResult(name=record.name, status=record.status)
            case.started_at, case.ended_at = record.started_at, record.ended_at
            result.cases.append(case)
    out = Console(file=io.StringIO(), width=120)
    with out.capture() as captured:
        summary(result, out)
    text = captured.get()
    listed = [line.split()[0] for line in text.splitlines() if line.strip().startswith("case_")]
    assert listed == ["case_005", "case_030"]
    assert "38 cases passed, not listed" in text
    assert "40 cases: 38 passed, 2 failed · run failed" in text


def test_plurals_say_one_case_and_one_log() -> None:
    stream = io.StringIO()
    console = PlainConsole(stream, verbose=True)
    console(RunStarted("r", "s", (SRV1,), ("only",)))
    console(HostLogs("only", "run", SRV1, (("x", b"1"),)))
    text = stream.getvalue()
    assert "started: 1 case on" in text and "collected 1 log" in text
    assert "1 cases" not in text and "1 logs" not in text
