"""Operations: a history's events paired into one record per operation.

An event is one line of a history (an invocation or a completion); an
operation is an invocation with its completion. Pairing is per process, as
Jepsen does it: a process has at most one operation in flight.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

EventType = Literal["invoke", "ok", "fail", "info"]
EVENT_TYPES: tuple[EventType, ...] = ("invoke", "ok", "fail", "info")


class HistoryError(ValueError):
    """A history that cannot be read or paired; the message names where."""


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history."""

    process: str
    type: EventType
    f: str
    value: Hashable
    key: Hashable = None
    time: float = 0.0
    # Where it came from, for error messages: "file:line".
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Op:
    """One operation: invoked at `call`, completed at `ret` (infinite when
    its outcome is unknown: it may take effect at any time after `call`).

    `value` is what the client sent (a write's value, a cas's (old, new), an
    add's element), `output` what it got back (a read's value), None when
    unknown. `required` ops must take effect; the others (`info`) may or
    may not.
    """

    id: int
    process: str
    f: str
    key: Hashable
    value: Hashable
    output: Hashable
    call: float
    ret: float
    required: bool
    origin: str = ""

    @property
    def status(self) -> str:
        return "ok" if self.required else "info"


def hashable(value: object) -> Hashable:
    """A value from JSON or EDN as something that can be compared and hashed
    (lists become tuples, sets frozensets, maps sorted item tuples)."""
    if isinstance(value, list | tuple):
        return tuple(hashable(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((hashable(k), hashable(v)) for k, v in value.items()), key=repr))
    if isinstance(value, Hashable):
        return value
    raise TypeError(f"unhashable value {value!r}")


def pair(events: Iterable[Event]) -> list[Op]:
    """Operations from events, in order of invocation.

    `fail` operations did not happen and are left out. An invocation never
    completed is `info`. The completion's value wins over the invocation's
    (a read is invoked with nil and completes with what it read).
    """
    open_: dict[str, tuple[Event, int]] = {}
    done: list[tuple[int, Op | None]] = []
    last_time = -math.inf
    for position, event in enumerate(events):
        last_time = max(last_time, event.time)
        if event.type == "invoke":
            if event.process in open_:
                raise HistoryError(
                    f"{event.origin}: process {event.process} invoked {event.f} while "
                    f"its {open_[event.process][0].f} is still in flight"
                )
            open_[event.process] = (event, position)
            continue
        began = open_.pop(event.process, None)
        if began is None:
            raise HistoryError(
                f"{event.origin}: process {event.process} completed {event.f} ({event.type}) "
                "without invoking it"
            )
        invoke, position_ = began
        if invoke.f != event.f:
            raise HistoryError(
                f"{event.origin}: process {event.process} invoked {invoke.f} but completed "
                f"{event.f}"
            )
        if event.type == "fail":
            done.append((position_, None))
            continue
        required = event.type == "ok"
        value = invoke.value
        output = event.value if required else None
        done.append(
            (
                position_,
                Op(
                    id=0,
                    process=event.process,
                    f=event.f,
                    key=invoke.key if invoke.key is not None else event.key,
                    value=value,
                    output=output,
                    call=invoke.time,
                    ret=event.time if required else math.inf,
                    required=required,
                    origin=invoke.origin,
                ),
            )
        )
    for invoke, position_ in open_.values():
        done.append(
            (
                position_,
                Op(
                    id=0,
                    process=invoke.process,
                    f=invoke.f,
                    key=invoke.key,
                    value=invoke.value,
                    output=None,
                    call=invoke.time,
                    ret=math.inf,
                    required=False,
                    origin=invoke.origin,
                ),
            )
        )
    done.sort(key=lambda item: item[0])
    ops = [op for _, op in done if op is not None]
    return [renumbered(op, i) for i, op in enumerate(ops)]


def renumbered(op: Op, new_id: int) -> Op:
    return replace(op, id=new_id)


def by_key(ops: Sequence[Op]) -> dict[Hashable, list[Op]]:
    """Operations grouped by key (P-compositionality: a history is
    linearizable if and only if each key's is)."""
    groups: dict[Hashable, list[Op]] = {}
    for op in ops:
        groups.setdefault(op.key, []).append(op)
    return groups
