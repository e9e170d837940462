"""The set and counter checkers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.history import counter, sets
from phalanx.history.ops import Event, pair
from tests.history.test_register import history, op


def test_a_set_with_every_acknowledged_add_is_valid_and_info_adds_may_be_missing() -> None:
    events = history(
        op("a", "add", 1, 0, 1),
        op("b", "add", 2, 0, 2, out="info"),
        op("c", "add", 3, 0, 3, out="info"),
        op("a", "read", (1, 3), 4, 5),
    )
    assert sets.check(pair(events)).valid


def test_a_lost_add_and_an_element_never_added_are_named_with_the_final_read() -> None:
    events = history(
        op("a", "add", 1, 0, 1),
        op("b", "add", 2, 0, 2),
        op("c", "add", 3, 0, 2, out="fail"),
        op("a", "read", (1, 3, 7), 4, 5),
    )
    (bad,) = sets.check(pair(events)).invalid
    assert bad.reason == "1 acknowledged add(s) lost: 2; 2 element(s) never added: 3, 7"
    assert [(o.process, o.f) for o in bad.window] == [("b", "add"), ("a", "read")]


def test_an_add_acknowledged_after_the_final_read_began_may_be_missing() -> None:
    events = history(op("a", "add", 1, 0, 5), op("b", "read", (), 4, 6))
    assert sets.check(pair(events)).valid


@given(st.lists(st.tuples(st.integers(1, 3), st.booleans()), max_size=30))
@settings(deadline=None)
def test_a_counter_read_between_its_bounds_is_valid(incs: list[tuple[int, bool]]) -> None:
    events: list[Event] = []
    total = 0
    for i, (by, ok) in enumerate(incs):
        events += op(f"p{i}", "incr", by, 2 * i, 2 * i + 1, out="ok" if ok else "info")
        total += by
    end = 2 * len(incs)
    # Every info increment took effect: the read is at the upper bound.
    events += op("r", "read", total, end, end + 1)
    assert counter.check(pair(events)).valid
    certain = sum(by for by, ok in incs if ok)
    events[-1] = Event("r", "ok", "read", certain - 1, None, end + 1)
    (bad,) = counter.check(pair(events)).invalid
    assert (
        bad.reason == f"read {certain - 1} by r, but the counter was between {certain} and {total}"
    )


def test_a_counter_read_above_what_may_have_been_added_fails() -> None:
    events = history(op("a", "incr", 2, 0, 1), op("b", "incr", 1, 0.5, 3), op("c", "read", 4, 2, 4))
    (bad,) = counter.check(pair(events)).invalid
    assert bad.reason == "read 4 by c, but the counter was between 2 and 3"
    assert [o.process for o in bad.window] == ["b", "c"]
