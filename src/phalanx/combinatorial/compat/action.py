"""``combtest.action``: actions, serial actions and option sets.

Action and OptionSet are phalanx's own. SerialAction differs in one rule, the
update a serial action passes on: py-combtest pushes the whole state the action
was given (as it stands after ``run``) to every walk of its branch whenever
``run`` returns anything but None. phalanx's own SerialAction passes on only the
keys that changed, so a key set to the value it already had on the branch would
not reach walks that changed it in between; tests written for py-combtest count
on the whole state arriving.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from phalanx.combinatorial.action import Action, CancelWalk, OptionSet
from phalanx.combinatorial.action import SerialAction as _SerialAction
from phalanx.combinatorial.serial import SerialUpdateError

__all__ = ["Action", "CancelWalk", "OptionSet", "SerialAction", "SyncPoint"]

_Run = Callable[[Any, Any, Any], Any]


def _whole_state_update(run: _Run) -> _Run:
    @functools.wraps(run)
    def wrapped(self: Any, param: Any, state: Any) -> Any:
        returned = run(self, param, state)
        if returned is None:
            return None
        if isinstance(state, Mapping):
            return dict(state)
        raise SerialUpdateError(
            f"{self!r} returned {returned!r}: py-combtest then pushes the state it was given "
            f"to every walk of its branch, but a {type(state).__qualname__} state has no "
            "update(); use a dict state, or return None"
        )

    wrapped.__combtest_whole_state__ = True  # type: ignore[attr-defined]
    return wrapped


class SerialAction(_SerialAction):
    """A phalanx SerialAction whose update is py-combtest's: the whole state it was given."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "__combtest_whole_state__", False):
            type.__setattr__(cls, "run", _whole_state_update(run))


# py-combtest's earlier name.
SyncPoint = SerialAction
