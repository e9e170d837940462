"""The timeline picture of a run: one lane per host, each stage a host ran as a
bar from its start to its end, coloured (and patterned) by its status, the
barriers as vertical lines where the last host of a stage ended, a time axis
under it all. A slow host is seen at once: its bar sticks out to the right.

Input is a run's JSON report (`report.json.to_json`, results.json): one dict.
A run still going renders too: a host on a stage with no end yet is drawn up
to `now` (by default the latest time the report mentions) and marked running.

Output is one inline SVG element as text: no script, no external reference,
readable without JavaScript. Every name in it comes from the run and is
escaped. Colours are presentation attributes, not CSS classes, so the picture
looks the same wherever it is embedded; classes and `data-` attributes only
say what each element is (`bar st-failed`, `lane`, `barrier`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

SUITE = "suite"  # how the suite's own stages are named where a case's name goes


@dataclass(frozen=True, slots=True)
class StatusLook:
    """How a status is drawn: a fill, a pattern over it (so that statuses
    differ by more than colour), an outline, and a glyph for legends and text."""

    fill: str
    pattern: str | None  # "hatch", "cross", "vertical", "dots", "stripes"; None: solid
    stroke: str
    dash: str | None
    glyph: str
    ink: str = "#ffffff"  # of a pattern's lines


LOOKS: dict[str, StatusLook] = {
    "passed": StatusLook("#2f7d4f", None, "#1f5c39", None, "✓"),
    "failed": StatusLook("#c0392b", "hatch", "#8e2a1f", None, "✗"),
    "error": StatusLook("#6c3fb5", "cross", "#4b2a80", None, "!"),
    "timeout": StatusLook("#b85c00", "vertical", "#7f4000", None, "◔"),
    "cancelled": StatusLook("#6b7280", "dots", "#4b5563", None, "⊘"),
    "skipped": StatusLook("#e5e7eb", None, "#6b7280", "4 2", "\u2013"),  # an en dash
    "running": StatusLook("#2b6cb0", "stripes", "#1e4e80", None, "▶", "#90cdf4"),
    "pending": StatusLook("#ffffff", None, "#9ca3af", "2 2", "·"),
}
_UNKNOWN = LOOKS["pending"]

# viewBox units; the SVG scales to its container's width.
WIDTH = 1000
LANE = 26
BAR = 16
TOP = 8
AXIS = 26
LEGEND = 24
FONT = 12
CHAR = 6.8  # roughly, at FONT: enough to size the label column
MAX_LABEL = 34  # characters of a host name shown; the full name is in its title


@dataclass(frozen=True, slots=True)
class Bar:
    """One host on one stage: seconds since the run started."""

    case: str | None  # None: the suite's own stage
    stage: str
    host: str
    status: str
    start: float
    end: float
    open: bool  # not ended: drawn up to now


@dataclass(frozen=True, slots=True)
class Barrier:
    """Where every host of a stage had ended it."""

    case: str | None
    stage: str
    at: float


@dataclass(frozen=True, slots=True)
class Fault:
    """A nemesis's step in a case (its history's `nemesis` events): a fault
    started, or healed."""

    case: str
    action: str  # start | heal
    what: str
    at: float


@dataclass(frozen=True, slots=True)
class Timeline:
    hosts: tuple[str, ...]
    bars: tuple[Bar, ...]
    barriers: tuple[Barrier, ...]
    span: float  # seconds from the run's start to its end (or now)
    started_at: datetime | None
    faults: tuple[Fault, ...] = ()


FAULT_INK = {"start": "#b91c1c", "heal": "#15803d"}


def moment(value: Any) -> datetime | None:
    """A report's timestamp (ISO text, or a datetime) as an aware datetime; a
    naive one is UTC, as in results.json. None: absent or unreadable."""
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, str) and value:
        try:
            found = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _stages(report: Mapping[str, Any]) -> Iterator[tuple[str | None, Mapping[str, Any]]]:
    for stage in mappings(report.get("stages")):
        yield None, stage
    for case in mappings(report.get("cases")):
        name = case.get("name")
        for stage in mappings(case.get("stages")):
            yield (str(name) if name is not None else "?"), stage


def mappings(value: Any) -> list[Mapping[str, Any]]:
    """The mappings in `value` if it is a list (a report's cases, stages,
    hosts); anything else in it is left out."""
    if not isinstance(value, list):
        return []
    # A decoded report holds dicts: asking the Mapping ABC about each item
    # of a big tree, several times a page, was most of the page's cost.
    return [v for v in value if type(v) is dict or isinstance(v, Mapping)]


def build(report: Mapping[str, Any], now: datetime | str | None = None) -> Timeline:
    """What the picture shows, as data: the lanes, bars and barriers."""
    hosts: dict[str, None] = dict.fromkeys(str(h) for h in report.get("hosts") or ())
    seen: list[datetime] = [
        m
        for m in (moment(report.get("started_at")), moment(report.get("ended_at")), moment(now))
        if m
    ]
    raw: list[tuple[str | None, str, str, str, datetime, datetime | None]] = []
    ends: list[tuple[str | None, str, list[datetime | None]]] = []
    for case, stage in _stages(report):
        stage_name = str(stage.get("name", "?"))
        stage_start = moment(stage.get("started_at"))
        ended: list[datetime | None] = []
        for host in mappings(stage.get("hosts")):
            name = str(host.get("host", "?"))
            hosts.setdefault(name)
            status = str(host.get("status", "pending"))
            start = moment(host.get("started_at")) or stage_start
            end = moment(host.get("ended_at"))
            ended.append(end)
            if start is None:  # named on the stage, not started yet: nothing to draw
                continue
            seen += [start] + ([end] if end else [])
            raw.append((case, stage_name, name, status, start, end))
        ends.append((case, stage_name, ended))
    if not seen:
        return Timeline(tuple(hosts), (), (), 0.0, None)
    origin = moment(report.get("started_at")) or min(seen)
    latest = moment(now) or max(seen)

    def since(m: datetime) -> float:
        return max(0.0, (m - origin).total_seconds())

    bars = tuple(
        Bar(
            case,
            stage,
            host,
            "running" if end is None and status in ("pending", "running") else status,
            since(start),
            since(end) if end else max(since(start), since(latest)),
            end is None,
        )
        for case, stage, host, status, start, end in raw
    )
    barriers = tuple(
        Barrier(case, stage, since(max(e for e in ended if e)))
        for case, stage, ended in ends
        if ended and all(ended)
    )
    span = max([since(latest), *(b.end for b in bars)])
    faults = tuple(
        Fault(case, action, what, since(datetime.fromtimestamp(at, UTC)))
        for case, action, what, at in _faults(report)
    )
    return Timeline(tuple(hosts), bars, barriers, span, origin, faults)


def _faults(report: Mapping[str, Any]) -> Iterator[tuple[str, str, str, float]]:
    """Each case's nemesis steps, from its history: case, action, what, when
    (seconds since the epoch, the coordinator's clock)."""
    for case in mappings(report.get("cases")):
        history = case.get("history")
        if not isinstance(history, Mapping):
            continue
        for event in mappings(history.get("events")):
            at = event.get("time")
            if event.get("process") != "nemesis" or not isinstance(at, int | float):
                continue
            if not math.isfinite(at) or not 0 <= at < 1e11:
                continue
            action = "start" if event.get("f") == "start" else "heal"
            yield str(case.get("name", "?")), action, str(event.get("value", "")), float(at)


def clock(value: float, step: float = 1.0) -> str:
    """A time on the axis: `0.25 s`, `12 s`, `1:05`, `1:02:05`."""
    if step < 1:
        digits = max(0, -math.floor(math.log10(step) + 1e-9))
        return f"{value:.{digits}f} s"
    whole = round(value)
    if step < 60 and whole < 120:
        return f"{whole} s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def took(value: float) -> str:
    """A duration for a title: `0.012 s`, `3.4 s`, `2 m 05 s`."""
    if value < 1:
        return f"{value:.3f} s"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m" if hours else f"{minutes} m {secs:02d} s"


_STEPS = (
    *(k * 10.0**e for e in range(-3, 1) for k in (1, 2, 5)),
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
)


def tick_step(span: float, most: int = 8) -> float:
    """A round step that puts at most `most` ticks on `span` seconds."""
    return next(
        (s for s in _STEPS if span / s <= most), _STEPS[-1] * math.ceil(span / 86400 / most)
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _defs(prefix: str) -> str:
    out = []
    for status, look in LOOKS.items():
        if look.pattern is None:
            continue
        mark = {
            "hatch": '<path d="M0 6L6 0" stroke-width="1.6"/>',
            "stripes": '<path d="M0 0L6 6" stroke-width="2"/>',
            "cross": '<path d="M0 6L6 0M0 0L6 6" stroke-width="1.1"/>',
            "vertical": '<path d="M3 0V6" stroke-width="1.4"/>',
            "dots": '<circle cx="3" cy="3" r="1.2" stroke-width="0"/>',
        }[look.pattern]
        out.append(
            f'<pattern id="{prefix}-{status}" width="6" height="6" patternUnits="userSpaceOnUse">'
            f'<rect width="6" height="6" fill="{look.fill}"/>'
            f'<g stroke="{look.ink}" fill="{look.ink}" opacity="0.55">{mark}</g></pattern>'
        )
    return f"<defs>{''.join(out)}</defs>"


def paint(status: str, prefix: str) -> str:
    """The fill and outline attributes of a shape showing `status`."""
    look = LOOKS.get(status, _UNKNOWN)
    fill = f"url(#{prefix}-{status})" if look.pattern else look.fill
    dash = f' stroke-dasharray="{look.dash}"' if look.dash else ""
    return f'fill="{fill}" stroke="{look.stroke}" stroke-width="1"{dash}'


def bar_title(bar: Bar) -> str:
    """What hovering a bar tells: case · stage · host · status · duration."""
    state = f"{bar.status} (so far)" if bar.open else bar.status
    parts = (bar.case or SUITE, bar.stage, bar.host, state, took(bar.end - bar.start))
    return " · ".join(parts)


def timeline_svg(
    report: Mapping[str, Any], *, now: datetime | str | None = None, id_prefix: str = "tl"
) -> str:
    """The run's timeline as an inline `<svg>`. `now`: where bars of stages
    still running end (default: the latest time in the report). `id_prefix`
    names the SVG's patterns: give each picture on one page its own."""
    prefix = re.sub(r"[^A-Za-z0-9_-]", "_", id_prefix) or "tl"
    tl = build(report, now)
    longest = max((len(h) for h in tl.hosts), default=4)
    label_w = min(max(longest, 6), MAX_LABEL) * CHAR + 16
    left, right = label_w, WIDTH - 20
    plot = right - left
    lanes_h = max(1, len(tl.hosts)) * LANE
    height = TOP + lanes_h + AXIS + LEGEND
    span = tl.span if tl.span > 0 else 1.0
    lane_of = {h: i for i, h in enumerate(tl.hosts)}

    def x(t: float) -> float:
        return left + plot * t / span

    suite = str(report.get("suite") or "run")
    label = (
        f"Timeline of {suite}: {len(tl.hosts)} host{'s' * (len(tl.hosts) != 1)}, "
        f"{len(tl.bars)} host stages, {len(tl.barriers)} barriers, "
        f"{took(tl.span)}"
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" '
        f'aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" font-family="system-ui, sans-serif" '
        f'font-size="{FONT}">',
        f"<title>{escape(label)}</title>",
        _defs(prefix),
    ]
    for i, host in enumerate(tl.hosts):
        top = TOP + i * LANE
        shade = "#f5f6f8" if i % 2 == 0 else "#ffffff"
        out.append(f'<g class="lane" data-host="{escape(host)}">')
        out.append(f'<rect x="0" y="{top}" width="{WIDTH}" height="{LANE}" fill="{shade}"/>')
        out.append(
            f'<text class="lane-label" x="{left - 8}" y="{top + LANE / 2 + FONT / 2 - 2}" '
            f'text-anchor="end" fill="#1f2937"><title>{escape(host)}</title>'
            f"{escape(_short(host, MAX_LABEL))}</text>"
        )
        for bar in (b for b in tl.bars if lane_of[b.host] == i):
            x0 = x(bar.start)
            w = max(x(bar.end) - x0, 1.5)
            out.append(
                f'<rect class="bar st-{escape(bar.status)}" data-case="{escape(bar.case or "")}" '
                f'data-stage="{escape(bar.stage)}" data-status="{escape(bar.status)}" '
                f'x="{x0:.2f}" y="{top + (LANE - BAR) / 2}" width="{w:.2f}" height="{BAR}" '
                f'rx="2" {paint(bar.status, prefix)}>'
                f"<title>{escape(bar_title(bar))}</title></rect>"
            )
        out.append("</g>")
    bottom = TOP + lanes_h
    for barrier in tl.barriers:
        bx = x(barrier.at)
        what = f"barrier: {barrier.case or SUITE} · {barrier.stage} · at {clock(barrier.at, 0.001)}"
        out.append(
            f'<line class="barrier" x1="{bx:.2f}" y1="{TOP - 4}" x2="{bx:.2f}" y2="{bottom + 3}" '
            f'stroke="#374151" stroke-width="1" stroke-opacity="0.55">'
            f"<title>{escape(what)}</title></line>"
        )
    for fault in tl.faults:
        fx = x(min(fault.at, tl.span))
        ink = FAULT_INK[fault.action]
        what = f"nemesis {fault.action}: {fault.what} · {fault.case} · at {clock(fault.at, 0.001)}"
        out.append(
            f'<g class="fault fault-{fault.action}" data-case="{escape(fault.case)}">'
            f'<line x1="{fx:.2f}" y1="{TOP}" x2="{fx:.2f}" y2="{bottom}" stroke="{ink}" '
            f'stroke-width="1.2" stroke-dasharray="3 2"/>'
            f'<path d="M{fx - 4:.2f} {TOP - 6}h8l-4 6z" fill="{ink}"/>'
            f"<title>{escape(what)}</title></g>"
        )
    out.append(_axis(left, right, bottom, tl.span, x))
    out.append(_legend(tl, bottom + AXIS, left, prefix))
    if not tl.bars:
        out.append(
            f'<text x="{left + 8}" y="{TOP + LANE / 2 + FONT / 2 - 2}" fill="#4b5563">'
            "nothing has run yet</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _axis(left: float, right: float, bottom: float, span: float, x: Any) -> str:
    out = [
        f'<g class="axis" fill="#374151" stroke="#6b7280">'
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
    ]
    if span > 0:
        step = tick_step(span)
        for n in range(int(span / step + 1e-9) + 1):
            t = n * step
            tx = x(t)
            out.append(
                f'<line x1="{tx:.2f}" y1="{bottom}" x2="{tx:.2f}" y2="{bottom + 4}"/>'
                f'<text x="{tx:.2f}" y="{bottom + 16}" text-anchor="middle" stroke="none">'
                f"{escape(clock(t, step))}</text>"
            )
    out.append("</g>")
    return "".join(out)


def _legend(tl: Timeline, top: float, left: float, prefix: str) -> str:
    shown = [s for s in LOOKS if any(b.status == s for b in tl.bars)]
    out = ['<g class="legend" fill="#1f2937">']
    cx = left
    for status in shown:
        out.append(
            f'<rect x="{cx:.1f}" y="{top + 4}" width="14" height="12" rx="2" '
            f"{paint(status, prefix)}/>"
            f'<text x="{cx + 18:.1f}" y="{top + 14}">{LOOKS[status].glyph} {status}</text>'
        )
        cx += 34 + (len(status) + 2) * CHAR
    if tl.barriers:
        out.append(
            f'<line x1="{cx + 6:.1f}" y1="{top + 2}" x2="{cx + 6:.1f}" y2="{top + 18}" '
            f'stroke="#374151" stroke-opacity="0.55"/>'
            f'<text x="{cx + 12:.1f}" y="{top + 14}">barrier</text>'
        )
        cx += 70
    for action in ("start", "heal"):
        if any(f.action == action for f in tl.faults):
            ink = FAULT_INK[action]
            label = "fault" if action == "start" else "healed"
            out.append(
                f'<path d="M{cx + 2:.1f} {top + 6}h8l-4 6z" fill="{ink}"/>'
                f'<text x="{cx + 14:.1f}" y="{top + 14}">{label}</text>'
            )
            cx += 24 + len(label) * CHAR
    out.append("</g>")
    return "".join(out)
