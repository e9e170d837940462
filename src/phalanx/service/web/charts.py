"""Small inline SVG charts for a suite's history (no script, no library):
one bar per run coloured by its status, and its duration as a line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 600
HEIGHT = 120
PAD = 24


@dataclass(frozen=True)
class Point:
    label: str  # the run id (the bar's tooltip)
    status: str
    seconds: float | None


def _fmt(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    if 0 < seconds < 1:
        return f"{seconds:.2g} s"  # 0.05 s, not 0.0 s
    return f"{seconds:.1f} s"


def status_chart(points: Sequence[Point], title: str = "Results over time") -> str:
    """One bar per run, oldest left: passed bars short and green, the others
    tall and coloured by status, so failures stand out."""
    n = max(len(points), 1)
    step = (WIDTH - 2 * PAD) / n
    bars = []
    for i, p in enumerate(points):
        tall = p.status not in ("passed", "skipped")
        h = HEIGHT - 2 * PAD if tall else (HEIGHT - 2 * PAD) / 2
        x = PAD + i * step
        bars.append(
            f'<rect class="st-{escape(p.status)}" x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" '
            f'width="{max(step - 2, 1):.1f}" height="{h:.1f}">'
            f"<title>{escape(p.label)}: {escape(p.status)}</title></rect>"
        )
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"/>'
        + "".join(bars)
        + _run_numbers([PAD + i * step + (step - 2) / 2 for i in range(len(points))])
        + "</svg>"
    )


LEFT = 56  # room for the duration axis's labels
TICKS = 10  # at most this many run numbers under the x axis


def _run_numbers(xs: Sequence[float]) -> str:
    """The runs' numbers under the x axis (as the grid's columns count
    them, from 1), thinned to about `TICKS`."""
    every = max(1, -(-len(xs) // TICKS))
    return "".join(
        f'<text class="label" x="{x:.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle">{i + 1}</text>'
        for i, x in enumerate(xs)
        if i % every == 0 or i == len(xs) - 1
    )


def duration_chart(points: Sequence[Point], title: str = "Duration over time") -> str:
    """The runs' durations as a line with a dot per run, oldest left, on
    axes: the duration up the left (0, half, the longest), the run's
    number along the bottom."""
    timed = [(i, p) for i, p in enumerate(points) if p.seconds is not None]
    top = max((p.seconds or 0.0 for _, p in timed), default=0.0) or 1.0
    n = max(len(points) - 1, 1)
    span = WIDTH - LEFT - PAD

    def xy(i: int, seconds: float) -> tuple[float, float]:
        x = LEFT + (i * span / n if len(points) > 1 else span / 2)
        y = HEIGHT - PAD - seconds / top * (HEIGHT - 2 * PAD)
        return x, y

    coords = [xy(i, p.seconds or 0.0) for i, p in timed]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(
        f'<circle class="st-{escape(p.status)}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
        f"<title>{escape(p.label)}: {_fmt(p.seconds or 0.0)}</title></circle>"
        for (x, y), (_, p) in zip(coords, timed, strict=True)
    )
    bottom = HEIGHT - PAD
    ticks = "".join(
        f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - PAD}" y2="{y:.1f}"/>'
        f'<text class="label" x="{LEFT - 6}" y="{y + 3:.1f}" text-anchor="end">{label}</text>'
        for y, label in (
            (bottom, "0 s"),
            (bottom - (HEIGHT - 2 * PAD) / 2, _fmt(top / 2)),
            (PAD, _fmt(top)),
        )
    )
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        + ticks
        + f'<line class="axis" x1="{LEFT}" y1="{PAD}" x2="{LEFT}" y2="{bottom}"/>'
        f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - PAD}" y2="{bottom}"/>'
        + _run_numbers([xy(i, 0.0)[0] for i in range(len(points))])
        + f'<polyline class="line" points="{path}"/>'
        + dots
        + "</svg>"
    )
