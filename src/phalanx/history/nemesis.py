"""A nemesis's schedule, decided without I/O: which fault starts when, on
which hosts, and when it heals. The same seed, faults and hosts give the
same schedule.

Faults, as a case names them: `partition-halves` (the hosts, shuffled, cut
into two halves), `partition-random` (a random split into two non-empty
groups), `isolate-random` (one host reaches no other), `slow-random DELAY`
(one host's links slowed), `pause NAME` / `kill NAME` (SIGSTOP / SIGKILL to
process NAME on one host). Every `every` seconds the nemesis alternates:
start a fault, heal it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

KINDS = ("partition-halves", "partition-random", "isolate-random", "slow-random", "pause", "kill")
PROCESS_FAULTS = ("pause", "kill")
_DELAY = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s)")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass(frozen=True)
class Fault:
    """A fault as named: its kind and its argument (a delay, a process)."""

    kind: str
    arg: str = ""


@dataclass(frozen=True)
class Step:
    """At `at` seconds from the start: `start` a fault on these hosts, or `heal`."""

    at: float
    action: str  # start | heal
    fault: Fault
    groups: tuple[tuple[str, ...], ...] = ()  # partition
    host: str = ""  # isolate, slow, pause, kill
    delay: float = 0.0  # slow, seconds
    what: str = field(default="", compare=False)


def parse_fault(text: str) -> Fault:
    """`partition-halves`, `slow-random 200ms`, `pause etcd`; raises
    ValueError saying what is wrong."""
    kind, _, arg = text.strip().partition(" ")
    arg = arg.strip()
    if kind not in KINDS:
        raise ValueError(f"unknown fault {kind!r} (one of {', '.join(KINDS)})")
    if kind in ("pause", "kill") and not arg:
        raise ValueError(f"{kind} needs the process's name: `{kind} NAME`")
    if kind == "slow-random":
        if not _DELAY.fullmatch(arg):
            raise ValueError(f"slow-random needs a delay with its unit (200ms), not {arg!r}")
    elif kind not in ("pause", "kill") and arg:
        raise ValueError(f"{kind} takes nothing after it (got {arg!r})")
    return Fault(kind, arg)


def schedule(
    faults: list[Fault], hosts: list[str], every: float, seed: int, duration: float
) -> list[Step]:
    """The steps within `duration` seconds; the last fault started is healed
    by the end whatever the timing."""
    if not faults:
        raise ValueError("a nemesis needs at least one fault")
    if not hosts:
        raise ValueError("a nemesis needs a host")
    if len(hosts) < 2 and any(f.kind not in PROCESS_FAULTS for f in faults):
        # Pausing or killing a process needs only its host; cutting a network two.
        raise ValueError("a nemesis needs at least two hosts")
    if every <= 0:
        raise ValueError(f"every must be more than 0 seconds, not {every}")
    rng = random.Random(seed)
    steps: list[Step] = []
    at = every
    while at < duration:
        fault = rng.choice(faults)
        started = _start(fault, sorted(hosts), rng, at)
        steps.append(started)
        heal_at = min(at + every, duration)
        steps.append(
            Step(heal_at, "heal", fault, started.groups, started.host, started.delay, "heal")
        )
        at += 2 * every
    return steps


def _start(fault: Fault, hosts: list[str], rng: random.Random, at: float) -> Step:
    if fault.kind == "partition-halves":
        shuffled = hosts[:]
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        groups = (tuple(sorted(shuffled[:half])), tuple(sorted(shuffled[half:])))
        return Step(at, "start", fault, groups=groups, what=_groups(groups))
    if fault.kind == "partition-random":
        shuffled = hosts[:]
        rng.shuffle(shuffled)
        cut = rng.randint(1, len(shuffled) - 1)
        groups = (tuple(sorted(shuffled[:cut])), tuple(sorted(shuffled[cut:])))
        return Step(at, "start", fault, groups=groups, what=_groups(groups))
    host = rng.choice(hosts)
    if fault.kind == "isolate-random":
        return Step(at, "start", fault, host=host, what=f"isolate {host}")
    if fault.kind == "slow-random":
        found = _DELAY.fullmatch(fault.arg)
        assert found is not None  # parse_fault checked it
        delay = float(found[1]) * _UNITS[found[2]]
        return Step(at, "start", fault, host=host, delay=delay, what=f"slow {host} {fault.arg}")
    return Step(at, "start", fault, host=host, what=f"{fault.kind} {fault.arg} on {host}")


def _groups(groups: tuple[tuple[str, ...], ...]) -> str:
    return "partition " + " | ".join(",".join(g) for g in groups)
