"""How a serial action's return value becomes an update to the walks of its branch."""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping
from typing import Any

from phalanx.combinatorial import state as state_codec


class SerialUpdateError(RuntimeError):
    """A serial action's return value cannot be applied to the walks' states."""


class _Assigned(dict[Any, Any]):
    """A dict state that remembers which keys were assigned, even to the value they had.

    A serial action that sets ``state["mode"] = "on"`` means every walk of its
    branch to see "on" afterwards, also when the branch already held "on" and a
    walk changed it in between: comparing values alone would not pass that on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.assigned: set[Any] = set()

    def __setitem__(self, key: Any, value: Any) -> None:
        # setdefault: a copy rebuilt without __init__ (copy.copy, a decoded
        # state that held this one) has no ``assigned`` yet.
        self.__dict__.setdefault("assigned", set()).add(key)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __copy__(self) -> _Assigned:
        # A copy the action makes records its own assignments, not this state's.
        return _Assigned(self)

    def __ior__(self, other: Any) -> _Assigned:  # type: ignore[misc]
        self.update(other)
        return self


def update_from_return(
    serial: object, given: Any, before: Any, returned: Any
) -> dict[str, Any] | None:
    """The update a serial action's ``run`` produced.

    ``given`` is the state object it was called with and ``before`` that state's
    encoding before the call. Returning ``given`` itself (mutated) passes on only
    the keys it assigned or changed: the others may have changed since in each
    walk, and must not be reset to the branch's old values.
    """
    if returned is None:
        return None
    if returned is given:
        if not isinstance(given, Mapping):
            raise SerialUpdateError(
                f"{serial!r} returned its {type(given).__qualname__} state: only a dict "
                "update can be applied to every walk of a branch"
            )
        old = before if isinstance(before, dict) else {}
        assigned = given.assigned if isinstance(given, _Assigned) else set()
        changed: dict[str, Any] = {}
        for key, value in given.items():
            if key in assigned or key not in old or state_codec.encode(value) != old[key]:
                changed[key] = value
        return changed
    if isinstance(returned, Mapping):
        return dict(returned)
    raise SerialUpdateError(
        f"{serial!r} returned a {type(returned).__qualname__}; a serial action returns None, "
        "a dict, or the state it was given (a dict) after changing it"
    )


def check_applicable(serial: object, update: Mapping[str, Any] | None, sample_state: Any) -> None:
    """Raise RuntimeError if ``update`` cannot be applied to states like ``sample_state``."""
    if update is None or sample_state is None or isinstance(sample_state, MutableMapping):
        return
    raise SerialUpdateError(
        f"{serial!r} returned a dict update, but walk states are "
        f"{type(sample_state).__qualname__}, not dicts: the update cannot be applied"
    )


def apply_update(state: Any, update: Mapping[str, Any] | None) -> Any:
    """``state`` with ``update`` merged in; a None state becomes a dict."""
    if update is None:
        return state
    if state is None:
        return dict(update)
    if isinstance(state, MutableMapping):
        state.update(update)
        return state
    raise SerialUpdateError(
        f"cannot apply a serial action's update to a {type(state).__qualname__} state (not a dict)"
    )


def run_serial(action: Any, state: Any) -> dict[str, Any] | None:
    """Run a serial action on a private copy of ``state``; return the update for the walks.

    The same path serves a run (``state`` is the branch's state) and a replay
    (``state`` is the walk's own), so a walk fails or passes the same way in both.
    """
    before = state_codec.encode(state)
    given = copy.copy(state_codec.decode(before))
    if type(given) is dict:
        given = _Assigned(given)
    returned = action.run(action.param, given)
    update = update_from_return(action, given, before, returned)
    check_applicable(action, update, state)
    return update
