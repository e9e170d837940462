"""Actions written the way py-combtest users write them, imported through
phalanx.combinatorial.compat. A module of their own so that worker processes can
import them by name."""

from __future__ import annotations

import errno
from collections.abc import Iterable
from typing import Any, ClassVar

from phalanx.combinatorial.compat.action import Action, OptionSet, SerialAction
from phalanx.combinatorial.compat.walk import CancelWalk


class Colour(Action):
    """Records its colour in state["path"]; a state the serial action marked gets the mark first."""

    OPTIONS: ClassVar[Iterable[Any] | None] = ("red", "green", "blue")

    def run(self, param: Any, state: Any) -> None:
        path = state.setdefault("path", [])
        if "mark" in state:
            path.append(state.pop("mark"))
        path.append(param)

    @classmethod
    def get_option_set(cls) -> OptionSet:
        return OptionSet(cls.OPTIONS or (), action_class=cls)


class Size(Colour):
    OPTIONS = (1, 2)


class Shape(Colour):
    OPTIONS = ("square",)


class Mark(SerialAction):
    """Marks every walk of its branch, py-combtest style: mutate the state, return it."""

    OPTIONS: ClassVar[Iterable[Any] | None] = ("m1", "m2")

    def run(self, param: Any, state: Any) -> Any:
        state["mark"] = param
        state["marked"] = param
        return state


class SameMark(Mark):
    """One option, the same as Mark's first: re-setting a value must still reach the walks."""

    OPTIONS = ("m1",)


class Approve(SerialAction):
    """Returns True, as py-combtest allows: "push the state I changed"."""

    OPTIONS = (1,)

    def run(self, param: Any, state: Any) -> Any:
        state["approved"] = param
        return True


class Tally(Action):
    """Appends to a list state (no dict: a serial update cannot be applied to it)."""

    OPTIONS = (1, 2)

    def run(self, param: Any, state: Any) -> None:
        state.append(param)


class Stop(Action):
    OPTIONS = (True,)

    def run(self, param: Any, state: Any) -> None:
        raise CancelWalk("enough")


class Broken(Action):
    OPTIONS = ("disk",)

    def run(self, param: Any, state: Any) -> None:
        raise OSError(errno.ENOSPC, f"no space left on {param}")


class Seen(Action):
    """Appends its option to state["seen"], shared with nothing if each walk has its own copy."""

    OPTIONS = (1, 2, 3, 4)

    def run(self, param: Any, state: Any) -> None:
        state["seen"].append(param)


class CopyCounting(dict[str, Any]):
    """A state that counts the copies it went through."""

    def __copy__(self) -> CopyCounting:
        out = CopyCounting(self)
        out["copies"] = self.get("copies", 0) + 1
        out["seen"] = list(self.get("seen", []))
        return out


class Param:
    """A parameter class with the to_json/from_json pair py-combtest's encoder uses."""

    def __init__(self, size: int) -> None:
        self.size = size

    def to_json(self) -> Any:
        return {"size": self.size}

    @classmethod
    def from_json(cls, obj: Any) -> Param:
        return cls(obj["size"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Param) and other.size == self.size

    def __hash__(self) -> int:
        return hash(self.size)


class Resize(Action):
    OPTIONS = (Param(1), Param(8))

    def run(self, param: Any, state: Any) -> None:
        state["size"] = param.size


class Propose(SerialAction):
    """Returns a value without touching the state: py-combtest pushes the state anyway."""

    OPTIONS = ("s",)

    def run(self, param: Any, state: Any) -> Any:
        return (param,)
