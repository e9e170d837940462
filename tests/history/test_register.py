"""The register checker: linearizable histories pass, stale reads fail, and
the window it reports is the smallest one that shows why."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.history import register
from phalanx.history.ops import Event, pair
from tests.history.histories import register_histories, written


def ev(process: str, type_: str, f: str, value: Any, time: float, key: str | None = None) -> Event:
    return Event(process, type_, f, value, key, time)  # type: ignore[arg-type]


def op(process: str, f: str, value: Any, call: float, ret: float, out: str = "ok") -> list[Event]:
    sent = None if f == "read" else value
    return [ev(process, "invoke", f, sent, call), ev(process, out, f, value, ret)]


def history(*ops: list[Event]) -> list[Event]:
    return sorted((e for o in ops for e in o), key=lambda e: e.time)


def shown(verdict: Any) -> list[tuple[str, str, Any]]:
    return [(o.process, o.f, o.output if o.f == "read" else o.value) for o in verdict.window]


@given(register_histories())
@settings(max_examples=200, deadline=None)
def test_a_linearizable_history_passes(events: list[Event]) -> None:
    verdict = register.check(pair(events))
    assert verdict.valid, verdict.invalid


@given(register_histories(), st.data())
@settings(max_examples=200, deadline=None)
def test_a_stale_read_fails_with_the_write_and_the_read_as_its_window(
    events: list[Event], data: st.DataObject
) -> None:
    end = max(e.time for e in events)
    stale = data.draw(st.sampled_from([None, *written(events)]))
    events = [
        *events,
        *op("late", "write", 99_999, end + 1, end + 2),
        *op("late", "read", stale, end + 3, end + 4),
    ]
    verdict = register.check(pair(events))
    assert not verdict.valid
    (bad,) = verdict.invalid
    assert shown(bad) == [("late", "write", 99_999), ("late", "read", stale)]


def test_a_read_of_an_overwritten_value_names_the_two_reads_that_disagree() -> None:
    events = history(
        op("a", "write", 1, 0, 1),
        op("b", "write", 2, 2, 3),
        op("c", "read", 2, 2.5, 3.5),
        op("a", "read", 1, 4, 5),
    )
    (bad,) = register.check(pair(events)).invalid
    # A register cannot go from 2 back to 1 without a write in between.
    assert shown(bad) == [("c", "read", 2), ("a", "read", 1)]
    assert bad.reason == "these 2 operations cannot be ordered"


def test_an_info_write_may_take_effect_late_or_never() -> None:
    late = history(
        op("a", "write", 1, 0, 1, out="info"),
        op("b", "read", None, 2, 3),
        op("b", "read", 1, 4, 5),
    )
    never = history(op("a", "write", 1, 0, 1, out="info"), op("b", "read", None, 2, 3))
    assert register.check(pair(late)).valid
    assert register.check(pair(never)).valid


def test_an_info_write_cannot_take_effect_before_it_was_invoked() -> None:
    events = history(op("b", "read", 1, 0, 1), op("a", "write", 1, 2, 3, out="info"))
    assert not register.check(pair(events)).valid


def test_a_failed_write_did_not_happen() -> None:
    events = history(op("a", "write", 1, 0, 1, out="fail"), op("b", "read", 1, 2, 3))
    assert not register.check(pair(events)).valid


def test_cas_takes_effect_only_from_its_old_value() -> None:
    good = history(
        op("a", "write", 1, 0, 1), op("a", "cas", (1, 2), 2, 3), op("b", "read", 2, 4, 5)
    )
    bad = history(op("a", "write", 3, 0, 1), op("a", "cas", (1, 2), 2, 3), op("b", "read", 2, 4, 5))
    assert register.check(pair(good)).valid
    assert not register.check(pair(bad)).valid


def test_keys_are_checked_apart_and_only_the_bad_one_is_named() -> None:
    events = history(
        [ev("a", "invoke", "write", 1, 0, "x"), ev("a", "ok", "write", 1, 1, "x")],
        [ev("b", "invoke", "read", None, 2, "y"), ev("b", "ok", "read", 1, 3, "y")],
        [ev("c", "invoke", "read", None, 2, "x"), ev("c", "ok", "read", 1, 3, "x")],
    )
    verdict = register.check(pair(events))
    assert verdict.summary() == "history not linearizable on key y"


def test_an_operation_the_model_does_not_know_names_where_it_came_from() -> None:
    events = [
        Event("a", "invoke", "frobnicate", 1, None, 0, "h.jsonl:3"),
        Event("a", "ok", "frobnicate", 1, None, 1, "h.jsonl:4"),
    ]
    try:
        register.check(pair(events))
    except ValueError as exc:
        assert str(exc) == "h.jsonl:3: the register model has no operation 'frobnicate'"
    else:
        raise AssertionError("no error")
