"""What every bench prints beside its figures: the machine it ran on (cores,
load before and after) and each figure's spread (min / median / max of its
repetitions), since on a shared machine one number hides how much it moved."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    return f"machine: {cores()} cores, load average {load()}"


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """`min / median / max` of `values` times `scale`."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return " / ".join(f"{v * scale:.{digits}f}" for v in (low, mid, high))
