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
        + "</svg>"
    )


def duration_chart(points: Sequence[Point], title: str = "Duration over time") -> str:
    """The runs' durations as a line with a dot per run, oldest left."""
    timed = [(i, p) for i, p in enumerate(points) if p.seconds is not None]
    top = max((p.seconds or 0.0 for _, p in timed), default=0.0) or 1.0
    n = max(len(points) - 1, 1)

    def xy(i: int, seconds: float) -> tuple[float, float]:
        x = PAD + i * (WIDTH - 2 * PAD) / n
        y = HEIGHT - PAD - seconds / top * (HEIGHT - 2 * PAD)
        return x, y

    coords = [xy(i, p.seconds or 0.0) for i, p in timed]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(
        f'<circle class="st-{escape(p.status)}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
        f"<title>{escape(p.label)}: {_fmt(p.seconds or 0.0)}</title></circle>"
        for (x, y), (_, p) in zip(coords, timed, strict=True)
    )
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"/>'
        f'<text class="label" x="2" y="{PAD - 8}">{_fmt(top)}</text>'
        f'<polyline class="line" points="{path}"/>' + dots + "</svg>"
    )
