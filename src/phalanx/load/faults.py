"""A case's `check:` and `nemesis:` keys, checked: each problem with the
path of the key at fault under the case (`nemesis.faults.1`)."""

from __future__ import annotations

from typing import Any

from phalanx.history.nemesis import parse_fault
from phalanx.load import fields
from phalanx.load.fields import FieldError
from phalanx.model import CHECKS, Nemesis

NEMESIS_KEYS = ("every", "faults", "seed")
Problem = tuple[str, tuple[str | int, ...]]


def check(value: Any) -> str:
    if value not in CHECKS:
        raise FieldError(f"must be one of {', '.join(CHECKS)}, not {value!r}")
    return str(value)


def nemesis(value: Any) -> tuple[Nemesis | None, list[Problem]]:
    """`{every: 2s, faults: [partition-halves, kill etcd], seed: 7}`."""
    if not isinstance(value, dict):
        return None, [("must be a mapping: {every: 2s, faults: [...], seed: 7}", ())]
    problems: list[Problem] = []
    for key in value:
        if key not in NEMESIS_KEYS:
            problems.append((fields.unknown_key(key, NEMESIS_KEYS, "nemesis key"), (str(key),)))
    every = 0.0
    try:
        every = fields.seconds(value.get("every", "2s"))
    except FieldError as exc:
        problems.append((str(exc), ("every",)))
    seed = value.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        problems.append((f"must be a whole number, not {seed!r}", ("seed",)))
    faults = value.get("faults")
    texts: list[str] = []
    if not isinstance(faults, list) or not faults:
        problems.append(("must be a non-empty list of faults (partition-halves, ...)", ("faults",)))
    else:
        for index, fault in enumerate(faults):
            try:
                if not isinstance(fault, str):
                    raise ValueError(f"a fault is text (partition-halves), not {fault!r}")
                parse_fault(fault)
                texts.append(fault.strip())
            except ValueError as exc:
                problems.append((str(exc), ("faults", index)))
    if problems:
        return None, problems
    return Nemesis(every=every, faults=tuple(texts), seed=seed), []
