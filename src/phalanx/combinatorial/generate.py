"""Which walks exist: the combination space and the strategies that pick from it.

Pure functions of their arguments. A walk is named by its index in the full
product (its *product index*); the digits of that index, in mixed radix, are the
option chosen for each action. Serial actions are the most significant digits,
so every branch (a fixed choice of serial options) is a contiguous run of
product indexes, and therefore of walk ids.
"""

from __future__ import annotations

import math
import random as _random
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from allpairspy import AllPairs

from phalanx.tasks.walks import STRATEGIES


@dataclass(frozen=True)
class Space:
    sizes: tuple[int, ...]  # options per action, in walk order
    serial: tuple[int, ...]  # positions of the serial actions, in walk order
    order: tuple[int, ...] = field(init=False)  # positions, most significant digit first
    weights: tuple[int, ...] = field(init=False)  # per position: value of one step of its digit
    total: int = field(init=False)

    def __post_init__(self) -> None:
        if not self.sizes or any(s < 1 for s in self.sizes):
            raise ValueError(f"every action needs at least one option (sizes {self.sizes})")
        others = tuple(p for p in range(len(self.sizes)) if p not in self.serial)
        order = self.serial + others
        weights = [0] * len(self.sizes)
        step = 1
        for pos in reversed(order):
            weights[pos] = step
            step *= self.sizes[pos]
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "weights", tuple(weights))
        object.__setattr__(self, "total", step)

    def digits(self, index: int) -> tuple[int, ...]:
        return tuple((index // w) % s for w, s in zip(self.weights, self.sizes, strict=True))

    def index(self, digits: Sequence[int]) -> int:
        return sum(d * w for d, w in zip(digits, self.weights, strict=True))

    def block(self, level: int) -> int:
        """How many product indexes share their first ``level`` serial digits."""
        return self.total // math.prod(self.sizes[p] for p in self.serial[:level])


def select(
    space: Space,
    strategy: str,
    *,
    count: int | None = None,
    seed: int = 0,
    allowed: Callable[[list[int]], bool] | None = None,
) -> WalkSet:
    """The walks ``strategy`` picks from ``space``."""
    if allowed is not None and strategy != "pairwise":
        raise ValueError("constraints apply to the pairwise strategy; use should_cancel otherwise")
    if strategy == "product":
        return WalkSet(space, None)
    if strategy == "pairwise":
        return WalkSet(space, tuple(pairwise(space, allowed)))
    if strategy == "random":
        if count is None:
            raise ValueError("the random strategy needs a walk count ('random:N' or count=N)")
        return WalkSet(space, tuple(random(space, count, seed)))
    raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")


def pairwise(space: Space, allowed: Callable[[list[int]], bool] | None = None) -> list[int]:
    """Product indexes (sorted) covering every pair of options of any two actions.

    ``allowed`` receives a prefix of option indexes (allpairspy builds rows left
    to right) and says whether it may be part of a walk.
    """
    if len(space.sizes) < 2:
        rows: list[list[int]] = [[i] for i in range(space.sizes[0])]
        if allowed is not None:
            rows = [r for r in rows if allowed(r)]
    else:
        params = [list(range(n)) for n in space.sizes]
        kwargs = {} if allowed is None else {"filter_func": lambda row: allowed(list(row))}
        rows = [list(row) for row in AllPairs(params, **kwargs)]
    return sorted({space.index(r) for r in rows})


def random(space: Space, count: int, seed: int) -> list[int]:
    """``count`` distinct product indexes (sorted), chosen reproducibly from ``seed``."""
    if count < 0:
        raise ValueError("a random strategy needs a walk count >= 0")
    rng = _random.Random(seed)
    if count >= space.total:
        return list(range(space.total))
    if space.total <= 2**62:
        return sorted(rng.sample(range(space.total), count))
    picked: set[int] = set()
    while len(picked) < count:
        picked.add(rng.randrange(space.total))
    return sorted(picked)


@dataclass(frozen=True)
class WalkSet:
    """The walks of a run: walk id -> product index, and branches as id ranges."""

    space: Space
    indexes: tuple[int, ...] | None  # sorted product indexes; None: all of them

    @property
    def count(self) -> int:
        return self.space.total if self.indexes is None else len(self.indexes)

    def product_index(self, walk_id: int) -> int:
        return walk_id if self.indexes is None else self.indexes[walk_id]

    def branch(self, level: int, key: int) -> tuple[int, int]:
        """Walk ids [lo, hi) whose first ``level`` serial digits make ``key``."""
        block = self.space.block(level)
        lo, hi = key * block, (key + 1) * block
        if self.indexes is None:
            return lo, hi
        return bisect_left(self.indexes, lo), bisect_left(self.indexes, hi)

    def sub_key(self, level: int, key: int, option: int) -> int:
        """The key of the branch one serial level down, choosing ``option``."""
        return key * self.space.sizes[self.space.serial[level]] + option


CEILING = 8192  # bounds a task's payload and result


def chunk_size(total: int, slots: int, seconds_per_walk: float | None, task_seconds: float) -> int:
    """Walks per task, for a dispatch of ``total`` walks.

    Tasks should last about ``task_seconds`` (long enough that dispatch costs
    little, short enough that slow walks spread over every slot). When even an
    equal share per slot would be quicker than that, one task per slot is best.
    Until a walk has been timed, a task is one walk: walks may take seconds.
    """
    share = max(1, math.ceil(total / max(1, slots)))
    if seconds_per_walk is None:
        return 1
    by_time = int(task_seconds / max(seconds_per_walk, 1e-9))
    return max(1, min(CEILING, share if by_time >= share else by_time))
