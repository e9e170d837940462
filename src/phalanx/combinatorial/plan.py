"""The resolved form of a walk order: classes, their options, segments, and a
fingerprint that workers check so that both sides mean the same walks."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from phalanx.combinatorial.action import Action, SerialAction, option_instances
from phalanx.combinatorial.generate import Space
from phalanx.combinatorial.names import class_path, resolve_class
from phalanx.combinatorial.walk import Walk, action_from_json, action_to_json

# A walk order entry: an Action class (all its options), or an iterable of
# instances of one class (e.g. ``Cls.get_option_set()`` or an OptionSet of chosen options).
OrderEntry = type[Action] | Iterable[Action]


class PlanError(RuntimeError):
    """A worker's view of the walk order differs from the coordinator's, or cannot be built."""


@dataclass(frozen=True)
class Segment:
    serial: int | None  # position of the serial action that opens it
    actions: tuple[int, ...]  # positions of the actions it runs, in order


@dataclass(frozen=True, eq=False)
class Plan:
    classes: tuple[type[Action], ...]
    options: tuple[tuple[Action, ...], ...]
    paths: tuple[str, ...]
    fingerprint: str
    # Per position: whether its options were given in the walk order (not the class's own).
    explicit: tuple[bool, ...] = ()

    @classmethod
    def build(cls, walk_order: Sequence[OrderEntry]) -> Plan:
        if not walk_order:
            raise ValueError("walk_order is empty")
        classes: list[type[Action]] = []
        options: list[tuple[Action, ...]] = []
        explicit: list[bool] = []
        for entry in walk_order:
            if isinstance(entry, type):
                classes.append(entry)
                options.append(tuple(option_instances(entry)))
                explicit.append(False)
            else:
                given = _given_options(entry)
                classes.append(type(given[0]))
                options.append(given)
                explicit.append(True)
        paths = tuple(class_path(c) for c in classes)
        opts = tuple(options)
        return cls(tuple(classes), opts, paths, _fingerprint(paths, opts), tuple(explicit))

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Plan:
        classes: list[OrderEntry] = []
        given = obj.get("options") or [None] * len(obj["actions"])
        for path, opts in zip(obj["actions"], given, strict=True):
            found = resolve_class(path)
            if not issubclass(found, Action):
                raise PlanError(f"{path} is not an Action subclass")
            if opts is None:
                classes.append(found)
            else:
                classes.append([action_from_json({"action": path, "param": p}) for p in opts])
        plan = cls.build(classes)
        if plan.fingerprint != obj["fingerprint"]:
            raise PlanError(
                "the options of "
                + ", ".join(c.__qualname__ for c in plan.classes)
                + " differ between the coordinator and this worker: get_option_set() must "
                "give the same options, in the same order, in every process (a set of "
                "strings, for one, iterates in a different order in each process)"
            )
        return plan

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"actions": list(self.paths), "fingerprint": self.fingerprint}
        if any(self.explicit):
            # Options chosen in the walk order travel with it: the worker cannot
            # get them from the class.
            wire["options"] = [
                [action_to_json(a)["param"] for a in opts] if given else None
                for opts, given in zip(self.options, self.explicit, strict=True)
            ]
        return wire

    @cached_property
    def space(self) -> Space:
        serial = tuple(i for i, c in enumerate(self.classes) if issubclass(c, SerialAction))
        return Space(tuple(len(o) for o in self.options), serial)

    @cached_property
    def segments(self) -> tuple[Segment, ...]:
        out: list[Segment] = []
        serial: int | None = None
        actions: list[int] = []
        for pos, c in enumerate(self.classes):
            if issubclass(c, SerialAction):
                if pos > 0:
                    out.append(Segment(serial, tuple(actions)))
                serial, actions = pos, []
            else:
                actions.append(pos)
        out.append(Segment(serial, tuple(actions)))
        return tuple(out)

    @cached_property
    def prunes(self) -> bool:
        """Whether any action overrides should_cancel: pruning costs a Walk per walk."""
        return any(c.should_cancel is not Action.should_cancel for c in self.classes)

    @cached_property
    def action_json(self) -> tuple[tuple[str, ...], ...]:
        """Per position and option, the action as a JSON fragment (for traces)."""
        return tuple(
            tuple(json.dumps(action_to_json(a), separators=(",", ":")) for a in opts)
            for opts in self.options
        )

    def walk(self, digits: Sequence[int], positions: Sequence[int] | None = None) -> Walk:
        chosen = range(len(self.classes)) if positions is None else positions
        return Walk([self.options[p][digits[p]] for p in chosen])

    def walk_of(self, steps: Sequence[tuple[int, int]]) -> Walk:
        """The walk of explicit (position, option) steps."""
        return Walk([self.options[p][o] for p, o in steps])

    def label(self, pos: int, option: int) -> str:
        return repr(self.options[pos][option])


def _given_options(entry: Iterable[Action]) -> tuple[Action, ...]:
    try:
        items = tuple(entry)
    except TypeError:
        raise TypeError(
            f"walk_order entries must be Action subclasses or iterables of Action "
            f"instances (e.g. Cls.get_option_set()), got {entry!r}"
        ) from None
    if not items:
        raise ValueError(f"walk_order entry {entry!r} has no options")
    first = type(items[0])
    for item in items:
        if not isinstance(item, Action) or type(item) is not first:
            raise TypeError(
                f"a walk_order entry must give instances of one Action class; {entry!r} "
                f"gave {item!r} after {items[0]!r}"
            )
    return items


def _fingerprint(paths: tuple[str, ...], options: tuple[tuple[Action, ...], ...]) -> str:
    body = [
        [p, [action_to_json(a)["param"] for a in opts]]
        for p, opts in zip(paths, options, strict=True)
    ]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


_CACHE: OrderedDict[str, Plan] = OrderedDict()
_CACHE_LOCK = threading.Lock()  # dask workers run tasks on several threads


def cached_from_wire(obj: dict[str, Any]) -> Plan:
    """Workers see the same plan for every chunk of a run: build it once."""
    key = obj["fingerprint"] + "|" + "|".join(obj["actions"])
    if obj.get("options"):
        key += "|" + json.dumps(obj["options"], sort_keys=True)
    with _CACHE_LOCK:
        plan = _CACHE.get(key)
        if plan is not None and _current(plan):
            _CACHE.move_to_end(key)
            return plan
    plan = Plan.from_wire(obj)
    with _CACHE_LOCK:
        _CACHE[key] = plan
        while len(_CACHE) > 16:
            _CACHE.popitem(last=False)
    return plan


def _current(plan: Plan) -> bool:
    """Whether the plan's classes are still what their names resolve to: a long-lived
    worker may have been handed a new version of an actions module since."""
    try:
        return all(resolve_class(p) is c for p, c in zip(plan.paths, plan.classes, strict=True))
    except Exception:
        return False
