"""An invalid key's window drawn as a per-client timeline (SVG), as
Porcupine's visualisation shows a history: one row per client, one bar per
operation from its call to its return; an `info` operation's bar runs to
the right edge, dashed (it may take effect any time after its call)."""

from __future__ import annotations

import math
from html import escape

from phalanx.history.text import describe
from phalanx.history.verdict import KeyVerdict, Verdict, key_name

ROW = 34
LEFT = 150
WIDTH = 900
BAR = 18


def svg(verdict: KeyVerdict) -> str:
    ops = sorted(verdict.window, key=lambda o: (o.call, o.ret))
    if not ops:
        return ""
    clients = list(dict.fromkeys(op.process for op in ops))
    start = min(op.call for op in ops)
    finite = [op.ret for op in ops if not math.isinf(op.ret)] + [op.call for op in ops]
    end = max(finite)
    span = (end - start) or 1.0
    plot = WIDTH - LEFT - 20

    def x(t: float) -> float:
        return LEFT + (min(t, end + span * 0.1) - start) / (span * 1.1) * plot

    height = ROW * len(clients) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="window of key {escape(key_name(verdict.key))}">'
    ]
    for row, client in enumerate(clients):
        y = 10 + row * ROW
        parts.append(
            f'<text x="4" y="{y + BAR - 4}" font-family="monospace" font-size="12">'
            f"{escape(client)}</text>"
        )
        for op in (o for o in ops if o.process == client):
            left = x(op.call)
            right = x(op.ret) if not math.isinf(op.ret) else WIDTH - 20
            dash = ' stroke-dasharray="4 3"' if not op.required else ""
            parts.append(
                f'<rect x="{left:.1f}" y="{y}" width="{max(right - left, 2):.1f}" height="{BAR}" '
                f'fill="#f4d6d6" stroke="#a33"{dash}><title>{escape(describe(op))} '
                f"({op.call:.6f} .. {'never returned' if math.isinf(op.ret) else f'{op.ret:.6f}'})"
                "</title></rect>"
            )
            parts.append(
                f'<text x="{left + 3:.1f}" y="{y + BAR - 5}" font-family="monospace" '
                f'font-size="11">{escape(describe(op))}</text>'
            )
    parts.append(
        f'<text x="{LEFT}" y="{height - 4}" font-family="monospace" font-size="11">'
        f"t = {start:.6f} s … {end:.6f} s</text></svg>"
    )
    return "".join(parts)


def page(name: str, verdict: Verdict) -> str:
    """A self-contained HTML page: the verdict, then each bad key's window."""
    body = [f"<h1>{escape(name)}</h1>", f"<p>{escape(verdict.summary())}</p>"]
    for bad in verdict.invalid:
        title = bad.reason if bad.key is None else f"key {key_name(bad.key)}: {bad.reason}"
        body.append(f"<h2>{escape(title)}</h2>")
        body.append(svg(bad))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(verdict.summary())}</title></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )
