"""A walk: one combination of actions, executed in order on one state."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Self, overload

from phalanx.combinatorial import state as state_codec
from phalanx.combinatorial.action import Action, CancelWalk, SerialAction
from phalanx.combinatorial.names import class_path, resolve_class
from phalanx.combinatorial.serial import apply_update, run_serial


class Walk:
    """``Walk([a, b, c])`` or ``Walk(a, b, c)``, where each item is an Action instance."""

    def __init__(self, *actions: Action | Iterable[Action]) -> None:
        items: list[Any] = []
        if len(actions) == 1 and not isinstance(actions[0], Action):
            items = list(actions[0])
        else:
            items = list(actions)
        for item in items:
            if not isinstance(item, Action):
                raise TypeError(f"a Walk holds Action instances, got {type(item).__qualname__}")
        self._actions: list[Action] = items

    def append(self, action: Action) -> None:
        self._actions.append(action)

    def extend(self, actions: Iterable[Action]) -> None:
        """Append each action of ``actions`` (a Walk, a list, an OptionSet...)."""
        more = list(actions)
        for item in more:
            if not isinstance(item, Action):
                raise TypeError(f"a Walk holds Action instances, got {type(item).__qualname__}")
        self._actions.extend(more)

    def __iadd__(self, other: Iterable[Action]) -> Self:
        # py-combtest rebuilds a walk from a trace with ``walk += segment``.
        self.extend(other)
        return self

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions)

    def __len__(self) -> int:
        return len(self._actions)

    @overload
    def __getitem__(self, index: int) -> Action: ...
    @overload
    def __getitem__(self, index: slice) -> Walk: ...
    def __getitem__(self, index: int | slice) -> Action | Walk:
        if isinstance(index, slice):
            return Walk(self._actions[index])
        return self._actions[index]

    def __add__(self, other: Walk) -> Walk:
        if not isinstance(other, Walk):
            return NotImplemented
        return Walk(self._actions + other._actions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Walk) and other._actions == self._actions

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Walk({self._actions!r})"

    def execute(self, state: Any = None) -> bool:
        """Run every action on ``state``; True if an action raised CancelWalk.

        Any other exception propagates (with a note naming the action), and no
        later action runs.
        """
        _, cancelled = run_actions(self._actions, state)
        return cancelled

    def to_json(self) -> list[dict[str, Any]]:
        return [action_to_json(a) for a in self._actions]

    @classmethod
    def from_json(cls, obj: list[dict[str, Any]]) -> Self:
        return cls([action_from_json(item) for item in obj])


def action_to_json(action: Action) -> dict[str, Any]:
    cls = type(action)
    return {
        "action": class_path(cls),
        "param": state_codec.encode(action.to_json(), cls.__qualname__),
    }


def action_from_json(obj: dict[str, Any]) -> Action:
    cls = resolve_class(obj["action"])
    if not issubclass(cls, Action):
        raise TypeError(f"{obj['action']} is not an Action")
    return cls.from_json(state_codec.decode(obj["param"]))


def run_actions(
    actions: Iterable[Action],
    state: Any,
    before: Callable[[int, Action], None] | None = None,
) -> tuple[Any, bool]:
    """Execute ``actions`` in order: (final state, cancelled).

    A serial action met here (a replay) runs on a copy of this walk's state and
    its update is merged, exactly as a run merges it into every walk of a branch.
    """
    for index, action in enumerate(actions):
        if before is not None:
            before(index, action)
        try:
            if isinstance(action, SerialAction):
                state = apply_update(state, run_serial(action, state))
            else:
                action.run(action.param, state)
        except CancelWalk:
            return state, True
        except Exception as exc:
            exc.add_note(f"in action {index} of the walk: {action!r}")
            raise
    return state, False
