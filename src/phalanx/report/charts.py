"""A small line chart as inline SVG: a numeric series a test reported, one
line per host (CloudPunch's `post` graphs). Lines differ by colour and by
dash pattern and marker, so they can be told apart without colour; each has
a `<title>` with its host and its values' range. No script, no external
reference; every name is escaped."""

from __future__ import annotations

from html import escape

from phalanx.report.runview import Series

WIDTH, HEIGHT = 480, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 44
# Dark enough on white (3:1 at least), and each with a dash of its own.
INKS = ("#1f5fa8", "#b4501b", "#2f7d4f", "#7b3fa8", "#8a6d00", "#b0275e", "#2c7a7b", "#4b5563")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4", "3 2 1 2")
MARKERS = ("circle", "square", "diamond", "triangle")
POINTS_MARKED = 40  # a line with more points gets no markers: they would be a smear


def number(value: float) -> str:
    """An axis label: short, whatever the magnitude."""
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.2e}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _marker(kind: str, x: float, y: float, ink: str) -> str:
    r = 3.0
    if kind == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{ink}"/>'
    if kind == "square":
        return (
            f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" fill="{ink}"/>'
        )
    if kind == "diamond":
        return f'<path d="M{x:.1f} {y - r - 1:.1f}l{r + 1} {r + 1}l-{r + 1} {r + 1}l-{r + 1} -{r + 1}z" fill="{ink}"/>'
    return f'<path d="M{x:.1f} {y - r - 1:.1f}l{r + 1} {2 * r + 1}h-{2 * r + 2}z" fill="{ink}"/>'


def line_chart(series: Series) -> str:
    """The series as an `<svg>` chart: x is the point's index, y its value."""
    what = " · ".join(p for p in (series.case, series.test, series.name) if p)
    values = [v for _, points in series.lines for v in points]
    low, high = min(values), max(values)
    if low == high:
        low, high = low - 1, high + 1
    if low > 0 and low < high / 3:
        low = 0.0  # a baseline at zero, unless it would flatten the lines
    longest = max(len(points) for _, points in series.lines)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    keys, key_x, key_row = [], float(LEFT), 0
    for host, _ in series.lines:
        shown = host if len(host) <= 28 else host[:27] + "…"
        room = 40 + len(shown) * 6.2
        if key_x + room > WIDTH and key_x > LEFT:
            key_x, key_row = float(LEFT), key_row + 1
        keys.append((shown, key_x, HEIGHT - 10 + 16 * key_row))
        key_x += room
    height = HEIGHT + 16 * key_row

    def x(i: int) -> float:
        return LEFT + plot_w * (i / (longest - 1) if longest > 1 else 0.5)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - low) / (high - low))

    label = f"Chart of {what}: {len(series.lines)} host{'s' * (len(series.lines) != 1)}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{escape(label)}</title>",
        f'<g stroke="#d1d5db">'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{TOP}"/>'
        f'<line x1="{LEFT}" y1="{TOP + plot_h / 2}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h / 2}"/>'
        f"</g>",
        f'<g stroke="#6b7280"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>'
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}"/></g>',
        f'<g fill="#374151" text-anchor="end">'
        f'<text x="{LEFT - 4}" y="{TOP + 4}">{number(high)}</text>'
        f'<text x="{LEFT - 4}" y="{TOP + plot_h / 2 + 4}">{number((high + low) / 2)}</text>'
        f'<text x="{LEFT - 4}" y="{TOP + plot_h + 4}">{number(low)}</text></g>',
        f'<g fill="#374151"><text x="{LEFT}" y="{TOP + plot_h + 14}">1</text>'
        f'<text x="{WIDTH - RIGHT}" y="{TOP + plot_h + 14}" text-anchor="end">{longest}</text>'
        f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h + 14}" text-anchor="middle">point</text>'
        f"</g>",
    ]
    for n, (host, points) in enumerate(series.lines):
        ink, dash = INKS[n % len(INKS)], DASHES[n % len(DASHES)]
        marker = MARKERS[n % len(MARKERS)]
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(points))
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        tip = f"{host}: {len(points)} points, {number(min(points))} to {number(max(points))}"
        out.append(f'<g class="series" data-host="{escape(host)}"><title>{escape(tip)}</title>')
        out.append(
            f'<polyline points="{coords}" fill="none" stroke="{ink}" stroke-width="2"{dashed}/>'
        )
        if len(points) <= POINTS_MARKED:
            out += [_marker(marker, x(i), y(v), ink) for i, v in enumerate(points)]
        out.append("</g>")
        shown, legend_x, legend_y = keys[n]
        out.append(
            f'<g class="key"><line x1="{legend_x:.1f}" y1="{legend_y - 4}" x2="{legend_x + 22:.1f}" '
            f'y2="{legend_y - 4}" stroke="{ink}" stroke-width="2"{dashed}/>'
            f"{_marker(marker, legend_x + 11, legend_y - 4, ink)}"
            f'<text x="{legend_x + 26:.1f}" y="{legend_y}" fill="#1f2937">{escape(shown)}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)
