"""``combtest.action``: actions, serial actions and option sets.

Action and OptionSet are phalanx's own. SerialAction differs in what ``run`` may
return: py-combtest treats any value but None as "push the state I was given to
the walks of my branch" (phalanx's own SerialAction accepts only None, a dict, or
the state itself). Returning the state passes on the keys the action assigned or
changed, as in phalanx; py-combtest pushed every key, which reset keys the
walks had written before the serial action (see docs/compat.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from phalanx.combinatorial.action import Action, CancelWalk
from phalanx.combinatorial.action import OptionSet as _OptionSet
from phalanx.combinatorial.action import SerialAction as _SerialAction
from phalanx.combinatorial.serial import SerialUpdateError

__all__ = ["Action", "CancelWalk", "OptionSet", "SerialAction", "SyncPoint"]

_Run = Callable[[Any, Any, Any], Any]


def _any_value_pushes_state(run: _Run) -> _Run:
    @functools.wraps(run)
    def wrapped(self: Any, param: Any, state: Any) -> Any:
        returned = run(self, param, state)
        if returned is None or returned is state or isinstance(returned, Mapping):
            return returned
        if isinstance(state, Mapping):
            return state
        raise SerialUpdateError(
            f"{self!r} returned {returned!r}: py-combtest then pushes the state it was given "
            f"to every walk of its branch, but a {type(state).__qualname__} state has no "
            "update(); use a dict state, or return None"
        )

    wrapped.__combtest_serial__ = True  # type: ignore[attr-defined]
    return wrapped


class SerialAction(_SerialAction):
    """A phalanx SerialAction whose ``run`` may return any value, as in py-combtest."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "__combtest_serial__", False):
            type.__setattr__(cls, "run", _any_value_pushes_state(run))


class OptionSet(_OptionSet):
    """phalanx's OptionSet, which ``next()`` also steps through, as py-combtest's did.

    ``iter()`` still starts afresh each time (py-combtest's could be iterated once).
    """

    _cursor: Iterator[Action] | None = None

    def __next__(self) -> Action:
        if self._cursor is None:
            self._cursor = iter(self)
        return next(self._cursor)


# py-combtest's earlier name.
SyncPoint = SerialAction
