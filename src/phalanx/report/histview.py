"""What the Run page shows of each case's operation history: its check's
verdict, how many operations from which clients, each host's clock offset,
the nemesis's faults, and each invalid key's window drawn as a per-client
timeline (history/picture.py). Pure: a run's JSON report in, data out;
nothing in the report is trusted (every value's type is checked, the
picture escapes every text)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from phalanx import layout
from phalanx.history.ops import Op, hashable
from phalanx.history.picture import svg
from phalanx.history.verdict import KeyVerdict
from phalanx.report.timeline import mappings


@dataclass(frozen=True, slots=True)
class Clock:
    host: str
    offset: str  # `+0.084 ms`
    rtt: str  # `0.807 ms` or `not measured`


@dataclass(frozen=True, slots=True)
class FaultRow:
    at: str  # seconds since the history's first event
    action: str
    what: str


@dataclass(frozen=True, slots=True)
class Drawn:
    title: str
    picture: str  # SVG, escaped where it was made


@dataclass(frozen=True, slots=True)
class HistoryView:
    case: str
    status: str
    check: str | None
    valid: bool | None
    verdict: str | None
    operations: int
    clients: int
    clocks: tuple[Clock, ...]
    faults: tuple[FaultRow, ...]
    windows: tuple[Drawn, ...]
    nemesis_error: str | None
    files: tuple[tuple[str, str], ...]  # (label, path in the run folder)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _ms(seconds: float, sign: bool = False) -> str:
    return f"{seconds * 1000:{'+' if sign else ''}.3f} ms"


def histories(report: Mapping[str, Any]) -> tuple[HistoryView, ...]:
    found = []
    for case in mappings(report.get("cases")):
        history = case.get("history")
        if not isinstance(history, Mapping):
            continue
        name = str(case.get("name", "?"))
        events = mappings(history.get("events"))
        clients = {str(e.get("process")) for e in events if e.get("process") != "nemesis"}
        times = [t for e in events if (t := _number(e.get("time"))) is not None]
        first = min(times, default=0.0)
        faults = tuple(
            FaultRow(
                f"{(_number(e.get('time')) or first) - first:.3f} s",
                str(e.get("f")),
                str(e.get("value")),
            )
            for e in events
            if e.get("process") == "nemesis"
        )
        clocks = tuple(
            Clock(
                str(c.get("host", "?")),
                _ms(_number(c.get("offset")) or 0.0, sign=True),
                _ms(rtt) if (rtt := _number(c.get("rtt"))) is not None else "not measured",
            )
            for c in mappings(history.get("clocks"))
        )
        windows = tuple(_drawn(w) for w in mappings(history.get("windows")))
        file = history.get("file")
        files: tuple[tuple[str, str], ...] = ()
        if isinstance(file, str) and file:
            files = (("history.jsonl", file), ("history.edn", layout.history_path(name, "edn")))
        valid = history.get("valid")
        found.append(
            HistoryView(
                case=name,
                status=str(case.get("status", "pending")),
                check=str(history["check"]) if history.get("check") else None,
                valid=valid if isinstance(valid, bool) else None,
                verdict=str(history["verdict"]) if history.get("verdict") else None,
                operations=sum(1 for e in events if e.get("type") == "invoke"),
                clients=len(clients),
                clocks=clocks,
                faults=faults,
                windows=windows,
                nemesis_error=_text(history.get("nemesis_error")),
                files=files,
            )
        )
    return tuple(found)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _drawn(window: Mapping[str, Any]) -> Drawn:
    key = window.get("key")
    reason = str(window.get("reason") or "")
    ops = []
    for i, op in enumerate(mappings(window.get("ops"))):
        call = _number(op.get("call")) or 0.0
        ret = _number(op.get("ret"))
        ops.append(
            Op(
                id=i,
                process=str(op.get("process", "?")),
                f=str(op.get("f", "?")),
                key=_hashable(key),
                value=_hashable(op.get("value")),
                output=_hashable(op.get("output")),
                call=call,
                ret=math.inf if ret is None else ret,
                required=op.get("required") is not False,
            )
        )
    verdict = KeyVerdict(_hashable(key), False, len(ops), reason, tuple(ops))
    title = reason if key is None else f"key {key}: {reason}"
    return Drawn(title, svg(verdict))


def _hashable(value: Any) -> Hashable:
    try:
        return hashable(value)
    except TypeError:
        return repr(value)
