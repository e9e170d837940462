"""The `set` model: elements added, then read back.

Every acknowledged add (`ok` before the final read began) must be in the
final read; nothing may be in it that was never added (an add that `fail`ed
did not happen); `info` adds may or may not be there.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from phalanx.history.ops import Op, by_key
from phalanx.history.verdict import KeyVerdict, Verdict

ADDS = frozenset({"add"})
READS = frozenset({"read", "read-set"})


def check(ops: Sequence[Op]) -> Verdict:
    return Verdict("set", tuple(check_key(k, g) for k, g in by_key(ops).items()))


def check_key(key: Hashable, ops: Sequence[Op]) -> KeyVerdict:
    for op in ops:
        if op.f not in ADDS | READS:
            raise ValueError(f"{op.origin}: the set model has no operation {op.f!r}")
    reads = [op for op in ops if op.f in READS and op.required]
    if not reads:
        return KeyVerdict(key, False, len(ops), "no read of the set completed")
    final = max(reads, key=lambda op: (op.call, op.ret))
    if not isinstance(final.output, tuple | frozenset):
        raise ValueError(
            f"{final.origin}: a set's read is a list of elements, not {final.output!r}"
        )
    seen = set(final.output)
    attempted = {op.value for op in ops if op.f in ADDS}
    lost = [op for op in ops if op.f in ADDS and op.required and op.ret < final.call]
    lost = [op for op in lost if op.value not in seen]
    unexpected = sorted((e for e in seen if e not in attempted), key=repr)
    problems = []
    if lost:
        problems.append(f"{len(lost)} acknowledged add(s) lost: {_few(op.value for op in lost)}")
    if unexpected:
        problems.append(f"{len(unexpected)} element(s) never added: {_few(unexpected)}")
    if not problems:
        return KeyVerdict(key, True, len(ops))
    return KeyVerdict(key, False, len(ops), "; ".join(problems), (*lost, final))


def _few(values: object) -> str:
    shown = [repr(v) for v in values]  # type: ignore[attr-defined]
    return ", ".join(shown[:10]) + (" …" if len(shown) > 10 else "")
