"""The register search against the definition itself: on small random
histories (valid or not), trying every order of every subset of the `info`
operations gives the same verdict."""

from __future__ import annotations

import itertools
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.history import register
from phalanx.history.ops import Op


def by_definition(ops: list[Op]) -> bool:
    required = [op for op in ops if op.required]
    optional = [op for op in ops if not op.required]
    for r in range(len(optional) + 1):
        for chosen in itertools.combinations(optional, r):
            for order in itertools.permutations([*required, *chosen]):
                if _respects_time(order) and _legal(order):
                    return True
    return False


def _respects_time(order: tuple[Op, ...]) -> bool:
    return all(not (b.ret < a.call) for i, a in enumerate(order) for b in order[i + 1 :])


def _legal(order: tuple[Op, ...]) -> bool:
    state: Any = None
    for op in order:
        if op.f == "write":
            state = op.value
        elif op.f == "read":
            if state != op.output:
                return False
        else:
            pair: tuple[Any, Any] = op.value  # type: ignore[assignment]
            old, new = pair
            if state != old:
                return False
            state = new
    return True


@st.composite
def small_histories(draw: Any) -> list[Op]:
    values = st.sampled_from([None, 1, 2])
    ops = []
    for i in range(draw(st.integers(1, 6))):
        f = draw(st.sampled_from(["read", "write", "cas"]))
        call = draw(st.integers(0, 10))
        ret = call + draw(st.integers(1, 6))
        required = draw(st.integers(0, 3)) > 0
        if f == "read" and not required:
            continue  # an info read tells nothing: pairing keeps no value for it
        value: Any = None
        if f == "write":
            value = draw(st.sampled_from([1, 2]))
        elif f == "cas":
            value = (draw(values), draw(st.sampled_from([1, 2])))
        output = draw(values) if f == "read" else None
        ops.append(
            Op(i, f"p{i}", f, None, value, output, call, ret if required else math.inf, required)
        )
    return ops


@given(small_histories())
@settings(max_examples=400, deadline=None)
def test_the_search_agrees_with_the_definition(ops: list[Op]) -> None:
    verdict = register.check(ops)
    assert verdict.valid == by_definition(ops), ops
    if not verdict.valid:
        (bad,) = verdict.invalid
        # The window shown cannot be ordered on its own either.
        assert bad.window
        assert not by_definition(list(bad.window))
