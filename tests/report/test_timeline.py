"""The timeline picture: lanes, bars, barriers, read back as the XML it is."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from phalanx.model import RunResult
from phalanx.report.json import to_json
from phalanx.report.timeline import clock, tick_step, timeline_svg
from tests.report.conftest import HOSTS, SRV1, SRV2

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # fails on anything unescaped
    assert root.tag == f"{SVG}svg"
    return root


def lanes(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "lane"]


def bars(root: ET.Element) -> list[tuple[str, ET.Element]]:
    """(host, bar) for every bar, by the lane it is in."""
    return [
        (lane.get("data-host") or "", rect)
        for lane in lanes(root)
        for rect in lane.iter(f"{SVG}rect")
        if (rect.get("class") or "").startswith("bar ")
    ]


def title(element: ET.Element) -> str:
    found = element.find(f"{SVG}title")
    assert found is not None and found.text is not None
    return found.text


def host_stages(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(case, stage, host, status) of every host that started a stage."""
    stages = [("suite", s) for s in report["stages"]]
    stages += [(c["name"], s) for c in report["cases"] for s in c["stages"]]
    return [(case, s["name"], h["host"], h["status"]) for case, s in stages for h in s["hosts"]]


def test_one_lane_per_host_named_and_one_bar_per_host_stage(
    mixed_run: RunResult, run_dir: Path
) -> None:
    report = to_json(mixed_run, run_dir)
    root = parse(timeline_svg(report))
    assert root.get("role") == "img"
    assert "hello" in (root.get("aria-label") or "")
    assert [g.get("data-host") for g in lanes(root)] == HOSTS
    labels = [
        "".join(t.itertext()) for g in lanes(root) for t in g.iter(f"{SVG}text")
    ]  # the label's text is its title (full name) then the name shown
    assert labels == [h + h for h in HOSTS]

    drawn = sorted(
        (r.get("data-case") or "suite", r.get("data-stage") or "", host, r.get("data-status") or "")
        for host, r in bars(root)
    )
    assert drawn == sorted(host_stages(report))
    for host, rect in bars(root):
        status = rect.get("data-status")
        assert rect.get("class") == f"bar st-{status}"
        case = rect.get("data-case") or "suite"
        assert title(rect).startswith(f"{case} · {rect.get('data-stage')} · {host} · {status} · ")

    (failed,) = [
        r for h, r in bars(root) if h == SRV1 and r.get("data-case") == "case_fail"
        and r.get("data-stage") == "run"
    ]  # fmt: skip
    assert failed.get("class") == "bar st-failed"
    assert title(failed) == f"case_fail · run · {SRV1} · failed · 1.5 s"
    assert failed.get("fill") == "url(#tl-failed)"  # hatched, not only red


def test_a_slow_host_sticks_out(mixed_run: RunResult, run_dir: Path) -> None:
    root = parse(timeline_svg(to_json(mixed_run, run_dir)))
    width = {
        (h, r.get("data-case"), r.get("data-stage")): float(r.get("width") or 0)
        for h, r in bars(root)
    }
    slow = width[(SRV1, "case_timeout", "run")]  # 60 s
    assert slow > 30 * width[(SRV2, "case_timeout", "run")]  # 1 s
    assert slow > 0.5 * max(width.values())


def test_a_barrier_where_each_stage_ended_on_every_host(
    mixed_run: RunResult, run_dir: Path
) -> None:
    report = to_json(mixed_run, run_dir)
    root = parse(timeline_svg(report))
    lines = [ln for ln in root.iter(f"{SVG}line") if ln.get("class") == "barrier"]
    stages = len(report["stages"]) + sum(len(c["stages"]) for c in report["cases"])
    assert len(lines) == stages == 2 + 4 * 3
    # The case_timeout run barrier is where its slowest host ended (at 91 s).
    (timeout_run,) = [ln for ln in lines if title(ln).startswith("barrier: case_timeout · run")]
    (slow,) = [
        r for h, r in bars(root)
        if h == SRV1 and r.get("data-case") == "case_timeout" and r.get("data-stage") == "run"
    ]  # fmt: skip
    end = float(slow.get("x") or 0) + float(slow.get("width") or 0)
    assert abs(float(timeout_run.get("x1") or 0) - end) < 0.05


def test_a_running_run_draws_open_bars_up_to_the_latest_time(
    mixed_run: RunResult, run_dir: Path
) -> None:
    report = to_json(mixed_run, run_dir)
    partial = copy.deepcopy(report)
    partial["status"], partial["ended_at"] = "running", None
    partial["stages"] = partial["stages"][:1]  # the suite finalize has not started
    case = partial["cases"][1]  # case_fail, in its run stage
    partial["cases"] = partial["cases"][:2]
    case["status"], case["ended_at"] = "running", None
    case["stages"] = case["stages"][:2]
    run = case["stages"][1]
    run["status"], run["ended_at"] = "running", None
    run["hosts"][0].update(status="running", ended_at=None)  # srv1 still at it
    root = parse(timeline_svg(partial))

    statuses = {(h, r.get("data-case"), r.get("data-stage")): r for h, r in bars(root)}
    still = statuses[(SRV1, "case_fail", "run")]
    assert still.get("class") == "bar st-running"
    assert "running (so far)" in title(still)
    done = statuses[(SRV2, "case_fail", "run")]
    # The latest time seen is srv2's end of the run stage: srv1's bar reaches it.
    reach = float(still.get("x") or 0) + float(still.get("width") or 0)
    assert abs(reach - float(done.get("x") or 0) - float(done.get("width") or 0)) < 0.01
    barriers = [title(ln) for ln in root.iter(f"{SVG}line") if ln.get("class") == "barrier"]
    assert not any(b.startswith("barrier: case_fail · run") for b in barriers)
    assert len(barriers) == 1 + 3 + 1  # suite initialize, case_pass, case_fail initialize

    # Given a later `now`, the open bar reaches further than every ended one.
    later = parse(timeline_svg(partial, now="2024-05-01T12:00:30+00:00"))
    open_bar = {(h, r.get("data-stage"), r.get("data-case")): r for h, r in bars(later)}[
        (SRV1, "run", "case_fail")
    ]
    assert title(open_bar).endswith("running (so far) · 19.0 s")  # 11 s to 30 s


def test_hostile_names_are_text(mixed_run: RunResult, run_dir: Path) -> None:
    report = to_json(mixed_run, run_dir)
    evil_host = 'x"><script>alert(1)</script>&amp;'
    report["hosts"][0] = evil_host
    report["cases"][0]["name"] = "<script>alert('case')</script>"
    for case in report["cases"]:
        for stage in case["stages"]:
            for host in stage["hosts"]:
                if host["host"] == SRV1:
                    host["host"] = evil_host
    svg = timeline_svg(report, id_prefix='"><b')
    root = parse(svg)
    assert not any(e.tag.endswith("script") for e in root.iter())
    assert lanes(root)[0].get("data-host") == evil_host
    titles = [title(r) for _, r in bars(root)]
    assert any(t.startswith("<script>alert('case')</script> · initialize · ") for t in titles)
    assert "<script>" not in svg


def test_no_reference_leaves_the_picture(mixed_run: RunResult, run_dir: Path) -> None:
    root = parse(timeline_svg(to_json(mixed_run, run_dir)))
    for element in root.iter():
        for name, value in element.attrib.items():
            assert "href" not in name and name != "src"
            assert "://" not in value or name == "xmlns"
            if "url(" in value:
                assert value.startswith("url(#")


def test_nothing_run_yet_still_shows_the_lanes() -> None:
    report = {"suite": "s", "hosts": ["a", "b"], "stages": [], "cases": [{"name": "c"}]}
    root = parse(timeline_svg(report))
    assert [g.get("data-host") for g in lanes(root)] == ["a", "b"]
    assert bars(root) == []
    assert "nothing has run yet" in "".join(root.itertext())


def test_axis_steps_are_round() -> None:
    assert tick_step(0.46) == 0.1
    assert tick_step(101.5) == 15
    assert tick_step(3 * 3600) == 1800
    assert clock(0.3, 0.1) == "0.3 s"
    assert clock(45, 15) == "45 s"
    assert clock(150, 30) == "2:30"
    assert clock(3 * 3600 + 5, 1800) == "3:00:05"
