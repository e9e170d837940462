"""Which walks each strategy picks, as a user sees them in the gathered states."""

from __future__ import annotations

import itertools

import pytest

from phalanx.combinatorial import run_tests
from phalanx.combinatorial.generate import Space, WalkSet
from tests.combinatorial import actions as a

ORDER = [a.Pick4, a.Pick3, a.Pick5, a.Pick2]
SIZES = [4, 3, 5, 2]
NAMES = ["Pick4", "Pick3", "Pick5", "Pick2"]


def chosen(results) -> list[tuple[int, ...]]:
    return [tuple(s[n] for n in NAMES) for s in results.states]


def test_pairwise_covers_every_pair_with_fewer_walks() -> None:
    results = run_tests(ORDER, state={}, gather_states=True, strategy="pairwise")

    walks = chosen(results)
    assert results.walk_count == len(walks) < 4 * 3 * 5 * 2
    for (i, n), (j, m) in itertools.combinations(enumerate(SIZES), 2):
        seen = {(w[i], w[j]) for w in walks}
        assert seen == set(itertools.product(range(n), range(m))), (NAMES[i], NAMES[j])


def test_pairwise_constraints_exclude_combinations_and_keep_the_other_pairs() -> None:
    def no_zero_zero(params: list[int]) -> bool:
        return not (len(params) >= 2 and params[0] == 0 and params[1] == 0)

    results = run_tests(
        ORDER, state={}, gather_states=True, strategy="pairwise", constraints=no_zero_zero
    )

    walks = chosen(results)
    assert all(not (w[0] == 0 and w[1] == 0) for w in walks)
    assert {(w[0], w[1]) for w in walks} == set(itertools.product(range(4), range(3))) - {(0, 0)}


def test_random_is_reproducible_from_its_seed() -> None:
    first = run_tests(ORDER, state={}, gather_states=True, strategy="random:20", seed=7)
    again = run_tests(ORDER, state={}, gather_states=True, strategy="random", count=20, seed=7)
    other = run_tests(ORDER, state={}, gather_states=True, strategy="random:20", seed=8)

    assert first.walk_count == 20
    assert len(set(chosen(first))) == 20  # distinct walks
    assert chosen(first) == chosen(again)
    assert chosen(first) != chosen(other)


def test_random_without_a_seed_reports_the_seed_it_used() -> None:
    first = run_tests(ORDER, state={}, gather_states=True, strategy="random:10")
    again = run_tests(ORDER, state={}, gather_states=True, strategy="random:10", seed=first.seed)

    assert first.seed is not None
    assert chosen(first) == chosen(again)


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        run_tests(ORDER, strategy="exhaustive")


def test_branches_are_contiguous_walk_id_ranges() -> None:
    # Serial actions at positions 1 and 3: every branch must be one run of ids,
    # whether all walks run (product) or a sorted subset does.
    space = Space((3, 2, 4, 3, 2), serial=(1, 3))
    for walks in (WalkSet(space, None), WalkSet(space, tuple(range(0, space.total, 7)))):
        for level in (1, 2):
            seen: list[int] = []
            for key in range(space.total // space.block(level)):
                lo, hi = walks.branch(level, key)
                ids = range(lo, hi)
                digits = [space.digits(walks.product_index(w)) for w in ids]
                serial_digits = {tuple(d[p] for p in space.serial[:level]) for d in digits}
                assert len(serial_digits) <= 1
                seen.extend(ids)
            assert seen == list(range(walks.count))


def test_product_index_round_trip() -> None:
    space = Space((3, 2, 4, 3, 2), serial=(1, 3))
    digits = {space.digits(i) for i in range(space.total)}
    assert digits == set(itertools.product(*(range(s) for s in space.sizes)))
    assert all(space.index(space.digits(i)) == i for i in range(space.total))


def test_pairwise_with_a_serial_action_runs_each_branch_after_its_serial() -> None:
    order = [a.Pick4, a.SerialAppend2, a.Pick3]
    results = run_tests(order, state={}, gather_states=True, strategy="pairwise")

    walks = [(s["Pick4"], s["sp_value"], s["Pick3"]) for s in results.states]
    assert results.error_count == 0
    assert len(walks) == results.walk_count < 4 * 2 * 3
    for i, j in itertools.combinations(range(3), 2):
        sizes = (4, 2, 3)
        assert {(w[i], w[j]) for w in walks} == set(
            itertools.product(range(sizes[i]), range(sizes[j]))
        )
