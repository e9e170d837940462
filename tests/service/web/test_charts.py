"""The history charts: inline SVG, a bar or dot per run, text escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from phalanx.service.web.charts import Point, duration_chart, status_chart

POINTS = [
    Point("r1", "passed", 10.0),
    Point("r2", "failed", 30.0),
    Point("<r3>", "passed", None),
]


def test_a_bar_per_run_oldest_left_failures_taller() -> None:
    svg = status_chart(POINTS, "results & more")
    ET.fromstring(svg)  # well-formed, the title escaped
    bars = re.findall(
        r'<rect class="st-(\w+)" x="([\d.]+)" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', svg
    )
    assert [b[0] for b in bars] == ["passed", "failed", "passed"]
    xs = [float(b[1]) for b in bars]
    assert xs == sorted(xs)
    assert float(bars[1][2]) > float(bars[0][2])
    assert "&lt;r3&gt;" in svg and 'aria-label="results &amp; more"' in svg


def test_durations_are_dots_for_the_runs_that_ended() -> None:
    svg = duration_chart(POINTS)
    ET.fromstring(svg)
    assert svg.count("<circle") == 2  # r3 has no duration
    assert "30.0 s" in svg
    assert status_chart([]).startswith("<svg") and duration_chart([]).startswith("<svg")


def test_the_duration_chart_has_axes_with_durations_and_run_numbers() -> None:
    svg = duration_chart(POINTS)
    labels = [e.text for e in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")] or [
        e.text for e in ET.fromstring(svg).iter("text")
    ]
    assert {"0 s", "15.0 s", "30.0 s"} <= set(labels)  # up the side: 0, half, the longest
    assert [x for x in labels if x and x.isdigit()] == ["1", "2", "3"]  # along the bottom
    assert svg.count('class="axis"') == 2
    many = duration_chart([Point(f"r{i}", "passed", float(i)) for i in range(50)])
    numbers = re.findall(r'text-anchor="middle">(\d+)<', many)
    assert numbers[0] == "1" and numbers[-1] == "50" and len(numbers) <= 11  # thinned
    assert re.findall(r'text-anchor="middle">(\d+)<', status_chart(POINTS)) == ["1", "2", "3"]
