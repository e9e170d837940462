"""The search for a linearization: Wing & Gong's, with Lowe's just-in-time
linearization and a cache of (ops linearized, state) as Porcupine keeps it.

Calls and returns are laid out in one doubly linked list in time order. The
search walks it: at a call, it tries to linearize that operation now (the
model must accept it, and the pair (ops linearized so far, state after)
must be new, or a sibling branch has already explored everything that
follows); at a return, the operation returning has not been linearized yet,
so the last choice is undone. Operations that are not required (`info`)
may take effect or not: at their return, one not linearized yet is dropped;
`info` ones return at infinity (they may take effect at any later time),
and the search is done once every required one is linearized.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence

from phalanx.history.ops import Op

ILLEGAL = object()
"""What a model's step returns for an operation it cannot apply in a state."""

Step = Callable[[Hashable, Op], object]
"""A model: the state after applying an operation, or ILLEGAL."""


def linearizable(ops: Sequence[Op], step: Step, initial: Hashable) -> bool:
    """Whether the operations can be ordered, each at one instant between
    its call and its return, so that `step` from `initial` accepts them all."""
    required_left = sum(1 for op in ops if op.required)
    if required_left == 0:
        return True
    # Entries: 2*i is op i's call, 2*i+1 its return; the head sentinel is -1
    # (stored at index n2). Ties: calls before returns, so operations that
    # touch the same instant count as concurrent.
    n = len(ops)
    order = sorted(
        range(2 * n),
        key=lambda e: (
            ops[e >> 1].call if e % 2 == 0 else ops[e >> 1].ret,
            e % 2,
            ops[e >> 1].call if e % 2 else 0.0,
        ),
    )
    head = 2 * n
    nxt = [-1] * (2 * n + 1)
    prv = [-1] * (2 * n + 1)
    previous = head
    for e in order:
        nxt[previous] = e
        prv[e] = previous
        previous = e

    def lift(op: int) -> None:
        for e in (2 * op, 2 * op + 1):
            p, q = prv[e], nxt[e]
            nxt[p] = q
            if q != -1:
                prv[q] = p

    def unlift(op: int) -> None:
        for e in (2 * op + 1, 2 * op):
            p, q = prv[e], nxt[e]
            nxt[p] = e
            if q != -1:
                prv[q] = e

    seen: set[tuple[int, Hashable]] = set()
    stack: list[tuple[int, Hashable, bool]] = []
    linearized = 0
    state: Hashable = initial
    entry = nxt[head]
    while entry != -1:
        op_index = entry >> 1
        if entry % 2 == 0:
            op = ops[op_index]
            after = step(state, op)
            if after is not ILLEGAL:
                bits = linearized | (1 << op_index)
                memo = (bits, after)
                if memo not in seen:
                    seen.add(memo)
                    stack.append((op_index, state, False))
                    state = after
                    linearized = bits
                    lift(op_index)
                    if op.required:
                        required_left -= 1
                        if required_left == 0:
                            return True
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
            continue
        if not ops[op_index].required:
            if ops[op_index].ret == math.inf:
                # Only optional operations are left ahead: nothing returns
                # before them, so every required one is linearized.
                return required_left == 0
            # An optional operation returning unlinearized never happened:
            # it leaves the list, as if linearized without effect.
            bits = linearized | (1 << op_index)
            if (bits, state) not in seen:
                seen.add((bits, state))
                stack.append((op_index, state, True))
                linearized = bits
                lift(op_index)
                entry = nxt[head]
                continue
        # Undo the last choice (skipping those no choice made) and try the
        # next operation after it.
        while True:
            if not stack:
                return False
            op_index, state, dropped = stack.pop()
            linearized &= ~(1 << op_index)
            unlift(op_index)
            if not dropped:
                break
        if ops[op_index].required:
            required_left += 1
        entry = nxt[2 * op_index]
    return required_left == 0
