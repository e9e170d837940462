"""run_tests end to end, on real worker processes (the default local executor)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from phalanx.combinatorial import (
    Action,
    OptionSet,
    SerialUpdateError,
    StateError,
    run_tests,
)
from tests.combinatorial import actions as a


def inner_with_serial(state: dict[str, Any]) -> list[int]:
    """py-combtest's reading of a state: the appended values, then the last serial value."""
    return [*state["inner"], state["sp_value"]]


def test_every_combination_exactly_once() -> None:
    results = run_tests([a.Append5, a.Append10, a.Append3], state={}, gather_states=True)

    assert results.walk_count == 150
    assert results.error_count == 0
    assert sorted(s["inner"] for s in results.states) == [
        list(c) for c in itertools.product(range(5), range(10), range(3))
    ]


def test_serial_actions_split_walks_into_segments() -> None:
    order = [a.Append5, a.Append10, a.SerialAppend5, a.Append3, a.SerialAppend2]
    results = run_tests(order, state={}, gather_states=True)

    assert results.walk_count == 1500
    assert results.segment_count == 4500
    assert results.error_count == 0
    assert sorted(inner_with_serial(s) for s in results.states) == [
        list(c) for c in itertools.product(range(5), range(10), range(5), range(3), range(2))
    ]


def test_leading_serial_action() -> None:
    order = [a.SerialAppend5, a.Append5, a.Append10, a.SerialAppend2]
    results = run_tests(order, state={}, gather_states=True)

    assert results.walk_count == 500
    assert results.segment_count == 1000
    assert sorted(inner_with_serial(s) for s in results.states) == [
        list(c) for c in itertools.product(range(5), range(5), range(10), range(2))
    ]


def test_one_failing_action_fails_its_walk_only() -> None:
    results = run_tests([a.AlwaysFails], verbose=0)

    assert results.walk_count == 1
    assert results.error_count == 1
    assert results.failed_tests == [0]
    (failure,) = results.failures
    assert failure.error_type == "builtins.ValueError"
    assert "always fails (x)" in failure.message
    assert failure.action == "AlwaysFails('x')"


def test_failure_stops_the_walk_and_later_actions_do_not_run() -> None:
    results = run_tests(
        [a.Append3, a.AlwaysFails, a.Append2], state={}, gather_states=True, verbose=0
    )

    assert results.error_count == 6
    assert results.failed_tests == list(range(6))
    # Only the first action ran in each walk.
    assert sorted(s["inner"] for s in results.states) == [[0], [0], [1], [1], [2], [2]]


def test_state_none() -> None:
    results = run_tests([a.NeedsNoState, a.NeedsNoState], gather_states=True)

    assert results.walk_count == 16
    assert results.error_count == 0
    assert results.states == [None] * 16


def test_serial_action_returning_a_tuple_on_list_states_raises() -> None:
    with pytest.raises(RuntimeError, match="SerialTuple") as info:
        run_tests([a.ListAppend3, a.SerialTuple, a.ListAppend3], state=[], verbose=0)
    assert isinstance(info.value, SerialUpdateError)


def test_cancel_walk_counts_as_cancel_not_error() -> None:
    results = run_tests([a.CancelOnZero, a.Append2], state={}, gather_states=True)

    assert results.cancel_count == 2  # the walks whose first action chose 0
    assert results.error_count == 0
    assert results.cancelled_tests == [0, 1]
    by_id = results.states_by_id
    assert by_id[0] == {}  # cancelled before anything was appended; Append2 never ran
    assert by_id[5]["inner"] == [2, 1]


def test_should_cancel_prunes_before_running() -> None:
    results = run_tests([a.First3, a.NotLikeFirst], state={}, gather_states=True)

    assert results.error_count == 0  # NotLikeFirst fails if a pruned walk runs
    assert results.pruned_count == 3
    assert results.walk_count == 6
    assert sorted(s["inner"] for s in results.states) == [
        [i, j] for i in range(3) for j in range(3) if i != j
    ]


def test_initial_state_that_is_not_json_names_type_and_path() -> None:
    with pytest.raises(StateError, match=r"state\['conf'\]\[1\].*builtins\.object"):
        run_tests([a.Append2], state={"conf": [1, object()]})


def test_state_made_unserialisable_by_an_action_fails_that_walk() -> None:
    results = run_tests([a.PutSocket, a.SerialAppend2, a.Append2], state={}, verbose=0)

    assert results.error_count == 4  # every walk: 1 x 2 x 2
    assert "state['handle']" in results.failures[0].message
    assert "builtins.object" in results.failures[0].message


def test_state_class_kept_and_copied_per_walk() -> None:
    results = run_tests([a.CountInto, a.CountInto], state=a.Counter(), gather_states=True)

    assert all(isinstance(s, a.Counter) for s in results.states)
    assert all(s.copied for s in results.states)  # the class's __copy__ made each walk's state
    assert sorted(s.values for s in results.states) == [[i, j] for i in range(3) for j in range(3)]


def test_threads_executor() -> None:
    results = run_tests(
        [a.Append5, a.SerialAppend2, a.Append3], state={}, gather_states=True, executor="threads"
    )

    assert results.executor == "threads"
    assert results.walk_count == 30
    assert sorted(s["inner"] for s in results.states) == [
        list(c) for c in itertools.product(range(5), range(2), range(3))
    ]


def test_action_classes_must_be_importable() -> None:
    def make() -> type[Action]:
        class Hidden(Action):
            OPTIONS = (1,)

        return Hidden

    with pytest.raises(TypeError, match="module level"):
        run_tests([make()])


def test_slow_walks_spread_over_every_worker() -> None:
    # Four walks of 0.1 s on two workers: lumping them into one task would leave
    # a worker idle.
    results = run_tests([a.Slow], state={}, gather_states=True, executor="local", max_workers=2)

    assert len({s["pid"] for s in results.states}) == 2


def test_a_walk_order_may_hold_option_sets_of_chosen_options() -> None:
    # The chosen options travel to the worker processes with the plan.
    order = [OptionSet([7, 9], a.Append5), a.Append2.get_option_set()]
    results = run_tests(order, state={}, gather_states=True)

    assert results.walk_count == 4
    assert sorted(s["inner"] for s in results.states) == [[7, 0], [7, 1], [9, 0], [9, 1]]


def test_a_walk_order_entry_must_give_one_action_class() -> None:
    with pytest.raises(TypeError, match="one Action class"):
        run_tests([[a.Append5(1), a.Append10(2)]])


def test_a_serial_action_setting_a_value_the_branch_had_still_reaches_every_walk() -> None:
    # SetMode("on"), then each walk clears the mode, then SetModeOn sets "on"
    # again: unchanged on the branch, changed in every walk.
    results = run_tests([a.SetMode, a.ClearMode, a.SetModeOn], state={}, gather_states=True)

    assert [s["mode"] for s in results.states] == ["on"] * 4


def test_a_serial_update_keeps_the_values_walks_wrote_before_it() -> None:
    # [A1, S, A1, C]: the serial update carries only what the serial action set.
    order = [a.ClearMode, a.SetMode, a.Append2, a.Singleton3]
    results = run_tests(order, state={"inner": []}, gather_states=True)

    assert sorted(s["inner"] for s in results.states) == sorted(
        [x, y, 3] for x in (1, 2) for _ in ("on", "off") for y in (0, 1)
    )


def test_a_trailing_serial_update_reaches_the_final_states() -> None:
    results = run_tests([a.Append2, a.SetMode], state={}, gather_states=True)

    assert sorted((s["inner"], s["mode"]) for s in results.states) == sorted(
        ([x], m) for x in (0, 1) for m in ("on", "off")
    )


def test_gathered_states_name_their_worker() -> None:
    results = run_tests([a.Append5, a.Append2], state={}, gather_states=True, executor="threads")

    assert len(results.state_workers) == len(results.states) == 10
    assert all(":" in w for w in results.state_workers)
