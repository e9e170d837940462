"""A case's history on the Run page (report.html and the web's): the
check's verdict, the window that cannot be ordered drawn per client, the
hosts' clocks, and the nemesis's faults on the run's timeline; every text
from the run escaped."""

from __future__ import annotations

from datetime import UTC, datetime

from phalanx.model import (
    CaseHistory,
    CaseResult,
    HistoryEvent,
    HostClock,
    RunResult,
    Status,
    Window,
    WindowOp,
)
from phalanx.report.html import render_run
from phalanx.report.json import to_json
from phalanx.report.timeline import build, timeline_svg

T0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"


def _report() -> dict[str, object]:
    start = T0.timestamp()
    history = CaseHistory(
        events=(
            HistoryEvent(process="c1/0", type="invoke", f="write", key="x", value=2, time=start + 1),
            HistoryEvent(process="nemesis", type="info", f="start", value=f"pause {EVIL} on h2", time=start + 1.5),
            HistoryEvent(process="c1/0", type="ok", f="write", key="x", value=2, time=start + 2),
            HistoryEvent(process="nemesis", type="info", f="heal", value="resume", time=start + 2.5),
            HistoryEvent(process=EVIL, type="invoke", f="read", key="x", time=start + 3),
            HistoryEvent(process=EVIL, type="ok", f="read", key="x", value=1, time=start + 4),
        ),
        clocks=(HostClock(host="h1", offset=0.0021, rtt=0.0009, samples=4), HostClock(host="h2")),
        file="cases/stale/history.jsonl",
        check="register",
        valid=False,
        verdict="history not linearizable on key x",
        windows=(
            Window(
                key="x",
                reason="these 2 operations cannot be ordered",
                ops=(
                    WindowOp(process="c1/0", f="write", value=2, output=2, call=start + 1, ret=start + 2, text="write 2"),
                    WindowOp(process=EVIL, f="read", output=1, call=start + 3, ret=start + 4, text="read → 1"),
                ),
            ),
        ),
    )  # fmt: skip
    case = CaseResult(
        name="stale",
        status=Status.FAILED,
        reason="history not linearizable on key x",
        started_at=T0,
        ended_at=T0.replace(second=5),
        history=history,
    )
    run = RunResult(
        run_id="r1",
        suite="s",
        status=Status.FAILED,
        hosts=["h1", "h2"],
        cases=[case],
        started_at=T0,
        ended_at=T0.replace(second=6),
    )
    return to_json(run)


def test_the_run_page_shows_the_verdict_the_window_and_the_clocks() -> None:
    page = render_run(_report())
    assert '<section id="histories"' in page
    assert "check register: history not linearizable on key x" in page
    assert "key x: these 2 operations cannot be ordered" in page
    # The window: one row per client, each operation as a bar with its text.
    window = page.split('aria-label="window of key x"')[1].split("</svg>")[0]
    assert window.count("<rect") == 2
    assert "write 2" in window and "read → 1" in window
    assert "c1/0" in window
    assert "+2.100 ms" in page and "0.900 ms" in page and "not measured" in page
    assert 'href="cases/stale/history.jsonl"' in page
    assert 'href="cases/stale/history.edn"' in page
    assert EVIL not in page
    assert "&lt;script&gt;" in page


def test_the_nemesis_faults_are_events_on_the_timeline() -> None:
    report = _report()
    faults = build(report).faults
    assert [(f.action, f.at) for f in faults] == [("start", 1.5), ("heal", 2.5)]
    picture = timeline_svg(report)
    assert picture.count('class="fault fault-start"') == 1
    assert picture.count('class="fault fault-heal"') == 1
    assert "nemesis start: pause &lt;script&gt;alert(1)&lt;/script&gt; on h2 · stale" in picture
    assert EVIL not in picture
