"""`count: N | '>N' | '<N'`: how many times an event must happen."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_FORM = re.compile(r"^\s*([<>]?)\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class Count:
    op: str  # "=", ">" or "<"
    n: int

    def met(self, seen: int) -> bool:
        if self.op == ">":
            return seen > self.n
        if self.op == "<":
            return seen < self.n
        return seen == self.n

    def __str__(self) -> str:
        return f"{'' if self.op == '=' else self.op}{self.n}"

    def describe(self) -> str:
        words = {"=": "exactly", ">": "more than", "<": "fewer than"}
        return f"{words[self.op]} {self.n} time{'s' if self.n != 1 else ''}"


AT_LEAST_ONCE = Count(">", 0)


def parse(value: Any) -> Count:
    """Raises ValueError with a message that reads well after `count:`."""
    if isinstance(value, bool):
        raise ValueError("must be N, '>N' or '<N'")
    if isinstance(value, int):
        return Count("=", value)
    match = _FORM.match(str(value))
    if not match:
        raise ValueError(f"must be N, '>N' or '<N', not {value!r}")
    return Count(match.group(1) or "=", int(match.group(2)))
