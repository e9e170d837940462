"""Action classes for the tests. They live in a module (not in test files) so that
process-pool and dask workers can import them by name."""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Iterable
from typing import Any, ClassVar

from phalanx.combinatorial import Action, CancelWalk, SerialAction, logger


class Append(Action):
    """Appends its parameter to state["inner"], after any value a serial action left."""

    def run(self, param: Any, state: Any) -> None:
        inner = state.setdefault("inner", [])
        if "sp_value" in state:
            inner.append(state.pop("sp_value"))
        inner.append(param)


class Append5(Append):
    OPTIONS = range(5)


class Append10(Append):
    OPTIONS = range(10)


class Append3(Append):
    OPTIONS = range(3)


class Append2(Append):
    OPTIONS = range(2)


class SerialAppend(SerialAction):
    def run(self, param: Any, state: Any) -> dict[str, Any]:
        return {"sp_value": param}


class SerialAppend5(SerialAppend):
    OPTIONS = range(5)


class SerialAppend2(SerialAppend):
    OPTIONS = range(2)


class Singleton1(Append):
    OPTIONS = (1,)


class Singleton2(Append):
    OPTIONS = (2,)


class SerialSingleton0(SerialAppend):
    OPTIONS = (0,)


class Singleton3(Append):
    OPTIONS = (3,)


class AlwaysFails(Action):
    OPTIONS = ("x",)

    def run(self, param: Any, state: Any) -> None:
        raise ValueError(f"always fails ({param})")


class NeedsNoState(Action):
    OPTIONS = range(4)

    def run(self, param: Any, state: Any) -> None:
        if state is not None:
            raise AssertionError(f"expected no state, got {state!r}")


class ListAppend3(Action):
    OPTIONS = range(3)

    def run(self, param: Any, state: Any) -> None:
        state.append(param)


class SerialTuple(SerialAction):
    OPTIONS = (7,)

    def run(self, param: Any, state: Any) -> tuple[Any, ...]:
        return (param,)


class CancelOnZero(Append):
    OPTIONS = range(3)

    def run(self, param: Any, state: Any) -> None:
        if param == 0:
            raise CancelWalk("zero")
        super().run(param, state)


class First3(Append):
    OPTIONS = range(3)


class NotLikeFirst(Append):
    """Pruned wherever it would repeat the first action's parameter, and fails if it ever runs so."""

    OPTIONS = range(3)

    def should_cancel(self, walk: Any, index: int) -> bool:
        return bool(walk[0].param == self.param)

    def run(self, param: Any, state: Any) -> None:
        if state["inner"][0] == param:
            raise AssertionError("a pruned walk ran")
        super().run(param, state)


class PutSocket(Action):
    OPTIONS = (1,)

    def run(self, param: Any, state: Any) -> None:
        state["handle"] = object()


class Remember(Action):
    """Records its parameter under its own class name (for shrinking)."""

    OPTIONS = range(4)

    def run(self, param: Any, state: Any) -> None:
        state[type(self).__name__] = param


class P0(Remember):
    pass


class P1(Remember):
    pass


class P2(Remember):
    pass


class P3(Remember):
    """The planted failure: P1 chose 3 and P3 chooses 2 or more."""

    def run(self, param: Any, state: Any) -> None:
        if state.get("P1") == 3 and param >= 2:
            raise KeyError(f"planted: P1=3, P3={param}")
        super().run(param, state)


class Logs(Append):
    OPTIONS = range(4)

    def run(self, param: Any, state: Any) -> None:
        logger.info("hello from pid %d param %d", os.getpid(), param)
        super().run(param, state)


class SerialReadsTrace(SerialAction):
    """Counts, when it runs, the segment-0 lines already in the trace."""

    OPTIONS = (0,)

    def run(self, param: Any, state: Any) -> dict[str, Any]:
        (path,) = glob.glob(os.path.join(state["log_dir"], "*.trace.jsonl"))
        with open(path, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f]
        seen = sum(1 for line in lines if line.get("segment") == 0 and "actions" in line)
        return {"seen": seen}


class Counter:
    """A state class with to_json/from_json and a __copy__ that marks copies."""

    def __init__(self, values: list[int] | None = None, copied: bool = False) -> None:
        self.values = values or []
        self.copied = copied

    def __copy__(self) -> Counter:
        return Counter(list(self.values), copied=True)

    def to_json(self) -> dict[str, Any]:
        return {"values": self.values, "copied": self.copied}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Counter:
        return cls(obj["values"], obj["copied"])


class CountInto(Action):
    OPTIONS = range(3)

    def run(self, param: Any, state: Any) -> None:
        state.values.append(param)


class Pick4(Remember):
    pass


class Pick3(Remember):
    OPTIONS = range(3)


class Pick5(Remember):
    OPTIONS = range(5)


class Pick2(Remember):
    OPTIONS = range(2)


class Slow(Action):
    """Takes a while, and notes which process ran it."""

    OPTIONS = range(4)

    def run(self, param: Any, state: Any) -> None:
        time.sleep(0.1)
        state["pid"] = os.getpid()


class SetMode(SerialAction):
    """Sets state["mode"] on the state it is given and returns that state."""

    OPTIONS: ClassVar[Iterable[Any] | None] = ("on", "off")

    def run(self, param: Any, state: Any) -> Any:
        state["mode"] = param
        return state


class SetModeOn(SetMode):
    OPTIONS = ("on",)


class ClearMode(Action):
    """Walks change what the serial action set: state["mode"] becomes "cleared"."""

    OPTIONS = (1, 2)

    def run(self, param: Any, state: Any) -> None:
        state["mode"] = "cleared"
        state.setdefault("inner", []).append(param)
