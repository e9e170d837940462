"""What users write: actions, their options, and the signals they may raise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from phalanx.combinatorial.walk import Walk


class CancelWalk(RuntimeError):
    """Raised by an action to stop its walk; counted as a cancel, not an error."""


class Action:
    """One operation and, as a class, the set of parameters it is combined over.

    Subclasses set ``OPTIONS`` or override :meth:`get_option_set`, and implement
    :meth:`run`. An instance is one option: ``Action(param)``.
    """

    OPTIONS: ClassVar[Iterable[Any] | None] = None

    def __init__(self, param: Any = None) -> None:
        self._param = param

    @property
    def param(self) -> Any:
        return self._param

    @property
    def static_ctx(self) -> Any:
        """py-combtest's name for :attr:`param`."""
        return self._param

    def run(self, param: Any, state: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must implement run(param, state)")

    def __call__(self, state: Any = None) -> Any:
        return self.run(self._param, state)

    @classmethod
    def get_option_set(cls) -> Iterable[Any]:
        if cls.OPTIONS is None:
            raise TypeError(f"{cls.__qualname__} has neither OPTIONS nor get_option_set()")
        return OptionSet(cls.OPTIONS, cls)

    def should_cancel(self, walk: Walk, index: int) -> bool:
        """True prunes the whole walk before any of it runs.

        ``walk`` is the complete walk (serial actions included); ``index`` is this
        action's position in it.
        """
        return False

    def to_json(self) -> Any:
        return self._param

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        return cls(obj)

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({self._param!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Action) or type(other) is not type(self):
            return NotImplemented
        return bool(self._param == other._param)

    def __hash__(self) -> int:
        try:
            return hash((type(self), self._param))
        except TypeError:
            return hash((type(self), repr(self._param)))


class SerialAction(Action):
    """An action that runs once per option, in the coordinating process, as a
    barrier across every walk of its branch.

    ``run`` returns None (nothing to pass on), a dict (merged into the state of
    every walk on the branch), or the state it was given after mutating it (the
    keys it changed are merged).
    """


# py-combtest's earlier name for a serial action.
SyncPoint = SerialAction


class OptionSet:
    """Iterates ``action_class(option)`` for each option: what ``get_option_set`` returns."""

    def __init__(self, options: Iterable[Any], action_class: type[Action]) -> None:
        if not (isinstance(action_class, type) and issubclass(action_class, Action)):
            raise TypeError(f"OptionSet needs an Action subclass, got {action_class!r}")
        self._options = options
        self._action_class = action_class

    @property
    def action_class(self) -> type[Action]:
        return self._action_class

    def __iter__(self) -> Iterator[Action]:
        for option in self._options:
            yield self._action_class(option)


def option_instances(cls: type[Action]) -> list[Action]:
    """The options of ``cls`` as instances, in the order it gives them.

    ``get_option_set`` may yield instances or bare parameters; both are accepted.
    """
    if not (isinstance(cls, type) and issubclass(cls, Action)):
        raise TypeError(f"walk_order entries must be Action subclasses, got {cls!r}")
    out: list[Action] = []
    for item in cls.get_option_set():
        out.append(item if isinstance(item, cls) else cls(item))
    if not out:
        raise ValueError(f"{cls.__qualname__} has no options")
    return out
