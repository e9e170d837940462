"""The `register` model: read, write and cas per key, checked for
linearizability, and the smallest window of an invalid key's operations.

A read's output is the value read; a write's value is what it wrote; a
cas's value is (old, new). Registers start as None (Jepsen's nil).

The window: the history is cut at the earliest completion after which it
cannot be ordered (a history cut short stays linearizable if the whole is;
operations still in flight at the cut may or may not have happened), then
started as late as still fails, from any state: operations that completed
before the start are dropped and those in flight at the start made optional.
Both only weaken the constraints, so a window that cannot be ordered proves
the whole history cannot either.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import cast

from phalanx.history.ops import Op, by_key
from phalanx.history.search import ILLEGAL, linearizable
from phalanx.history.verdict import KeyVerdict, Verdict

READS = frozenset({"read", "get"})
WRITES = frozenset({"write", "put", "set"})
CASES = frozenset({"cas", "compare-and-set"})


class _Any:
    """The state before a window: any value at all (the first operation that
    needs one decides it)."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Hashable = _Any()


def step(state: Hashable, op: Op) -> object:
    f = op.f
    if f in WRITES:
        return op.value
    if f in READS:
        return op.output if state is ANY or state == op.output else ILLEGAL
    if f in CASES:
        old, new = cast(tuple[Hashable, Hashable], op.value)
        return new if state is ANY or state == old else ILLEGAL
    raise ValueError(f"{op.origin}: the register model has no operation {f!r}")


def check(ops: Sequence[Op]) -> Verdict:
    verdicts = []
    for key, group in by_key(ops).items():
        verdicts.append(check_key(key, group))
    return Verdict("register", tuple(verdicts))


def check_key(key: Hashable, ops: Sequence[Op]) -> KeyVerdict:
    for op in ops:
        if op.f not in READS | WRITES | CASES:
            raise ValueError(f"{op.origin}: the register model has no operation {op.f!r}")
        if op.f in CASES and not (isinstance(op.value, tuple) and len(op.value) == 2):
            raise ValueError(f"{op.origin}: a cas's value is [old, new], not {op.value!r}")
    useful = prepared(ops)
    if linearizable(useful, step, None):
        return KeyVerdict(key, True, len(ops))
    window = smallest_window(useful)
    by_id = {op.id: op for op in ops}
    shown = tuple(by_id[op.id] for op in window)
    return KeyVerdict(
        key,
        False,
        len(ops),
        "this operation cannot be explained"
        if len(shown) == 1
        else f"these {len(shown)} operations cannot be ordered",
        shown,
    )


def prepared(ops: Sequence[Op]) -> list[Op]:
    """The operations the search needs: reads with an unknown result say
    nothing, and an optional write or cas whose new value nobody ever
    observes can always be left out (taking effect only makes later reads
    harder to explain)."""
    observed: set[Hashable] = set()
    for op in ops:
        if op.f in READS and op.required:
            observed.add(op.output)
        elif op.f in CASES:
            observed.add(op.value[0])  # type: ignore[index]
    kept = []
    for op in ops:
        if op.f in READS and not op.required and op.output is None:
            continue
        if not op.required and op.f in WRITES and op.value not in observed:
            continue
        if not op.required and op.f in CASES and op.value[1] not in observed:  # type: ignore[index]
            continue
        kept.append(op)
    return kept


def cut_at(ops: Sequence[Op], end: float) -> list[Op]:
    """The history as it stood at `end`: what was in flight may or may not
    have happened (a read in flight had no result yet)."""
    kept = []
    for op in ops:
        if op.call > end:
            continue
        if op.ret > end:
            if op.f in READS:
                continue
            op = replace(op, output=None, ret=math.inf, required=False)
        kept.append(op)
    return kept


def started_at(ops: Sequence[Op], start: float) -> list[Op]:
    """The operations after `start`: those done by then are dropped, those
    in flight may or may not take effect inside the window (they may have
    before it)."""
    kept = []
    for op in ops:
        if op.ret <= start:
            continue
        if op.call <= start and op.required:
            op = replace(op, required=False)
        kept.append(op)
    return kept


def _valid(ops: Sequence[Op], initial: Hashable) -> bool:
    return linearizable(ops, step, initial)


def smallest_window(ops: Sequence[Op]) -> list[Op]:
    """The shortest run of operations, in time, that cannot be ordered."""
    ends = sorted({op.ret for op in ops if op.required})
    # The earliest completion after which the history cannot be ordered.
    lo, hi = 0, len(ends) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _valid(cut_at(ops, ends[mid]), None):
            lo = mid + 1
        else:
            hi = mid
    end = ends[lo]
    prefix = cut_at(ops, end)
    # The latest start from which it still cannot: windows only grow as the
    # start moves back, so a binary search finds it.
    starts = [-math.inf, *sorted({op.ret for op in prefix if op.required and op.ret < end})]
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _valid(started_at(prefix, starts[mid]), ANY if mid else None):
            hi = mid - 1
        else:
            lo = mid
    initial = ANY if lo else None
    window = essential(started_at(prefix, starts[lo]), initial)
    ids = {op.id for op in window if op.required}
    return [op for op in ops if op.id in ids]


ESSENTIAL_LIMIT = 64
"""Windows up to this many operations are thinned to those it needs."""


def essential(window: list[Op], initial: Hashable) -> list[Op]:
    """The window with every operation it does not need made optional: one
    that may as well never have happened is not part of the explanation
    (making an operation optional only weakens the window, so what is left
    still cannot be ordered)."""
    if len(window) > ESSENTIAL_LIMIT:
        return window
    for i, op in enumerate(window):
        if not op.required:
            continue
        trial = [*window[:i], replace(op, required=False), *window[i + 1 :]]
        if not _valid(trial, initial):
            window = trial
    return window
