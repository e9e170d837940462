"""The `counter` model: increments and reads.

A read must lie between the sum of the increments certainly applied (`ok`
before the read began) and that sum plus every increment that may have been
(invoked before the read completed, `ok` or `info`). A negative increment
lowers the lower bound instead.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from phalanx.history.ops import Op, by_key
from phalanx.history.verdict import KeyVerdict, Verdict

INCREMENTS = frozenset({"incr", "add", "increment"})
READS = frozenset({"read"})


def delta(op: Op) -> int:
    value = 1 if op.value is None else op.value
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{op.origin}: an increment is a whole number, not {value!r}")
    return value


def check(ops: Sequence[Op]) -> Verdict:
    return Verdict("counter", tuple(check_key(k, g) for k, g in by_key(ops).items()))


def check_key(key: Hashable, ops: Sequence[Op]) -> KeyVerdict:
    for op in ops:
        if op.f not in INCREMENTS | READS:
            raise ValueError(f"{op.origin}: the counter model has no operation {op.f!r}")
    increments = [(op, delta(op)) for op in ops if op.f in INCREMENTS]
    for read in (op for op in ops if op.f in READS and op.required):
        if not isinstance(read.output, int) or isinstance(read.output, bool):
            raise ValueError(f"{read.origin}: a counter's read is a number, not {read.output!r}")
        certain = sum(d for op, d in increments if op.required and op.ret < read.call)
        maybe = [(op, d) for op, d in increments if op.call < read.ret]
        maybe = [(op, d) for op, d in maybe if not (op.required and op.ret < read.call)]
        low = certain + sum(min(d, 0) for _, d in maybe)
        high = certain + sum(max(d, 0) for _, d in maybe)
        if not low <= read.output <= high:
            return KeyVerdict(
                key,
                False,
                len(ops),
                f"read {read.output} by {read.process}, but the counter was between "
                f"{low} and {high}",
                (*(op for op, _ in maybe), read),
            )
    return KeyVerdict(key, True, len(ops))
