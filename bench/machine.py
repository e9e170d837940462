"""What every bench prints beside its figures: the machine it ran on (cores,
load before and after) and each figure's spread (min / median / max of its
repetitions), since on a shared machine one number hides how much it moved."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence


def installed_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) as a user's shell has it: without
    PYTHONDONTWRITEBYTECODE, which some shells and CI images set. phalanx's
    modules then run from their .pyc files as after `pip install`; with it,
    every command would compile phalanx's sources again, ~0.1 s of CPU that
    no installed copy pays."""
    return {
        k: v
        for k, v in (os.environ if env is None else env).items()
        if k != "PYTHONDONTWRITEBYTECODE"
    }


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
