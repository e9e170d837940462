"""A verdict as text: one line per key that failed, then its window, one
operation a line in time order, as `phalanx check` prints it."""

from __future__ import annotations

import math

from phalanx.history.ops import Op
from phalanx.history.verdict import Verdict, key_name


def describe(op: Op) -> str:
    """`write 3`, `read → 2`, `cas 1→2`, `add 5 (info)`."""
    if op.f in ("read", "read-set", "get"):
        what = f"{op.f} → {op.output!r}" if op.required else f"{op.f} (no result)"
    elif isinstance(op.value, tuple) and op.f in ("cas", "compare-and-set") and len(op.value) == 2:
        what = f"{op.f} {op.value[0]!r}→{op.value[1]!r}"
    else:
        what = f"{op.f} {op.value!r}"
    return what if op.required else f"{what} (info)"


def _time(t: float) -> str:
    return "never returned" if math.isinf(t) else f"{t:.6f}"


def lines(verdict: Verdict) -> list[str]:
    out = [verdict.summary()]
    for bad in verdict.invalid:
        out.append(bad.reason if bad.key is None else f"key {key_name(bad.key)}: {bad.reason}")
        width = max([len(op.process) for op in bad.window] + [7])
        for op in sorted(bad.window, key=lambda o: (o.call, o.ret)):
            where = f"  ({op.origin})" if op.origin else ""
            out.append(
                f"  {op.process:<{width}}  {_time(op.call)} .. {_time(op.ret)}  "
                f"{describe(op)}{where}"
            )
    return out
