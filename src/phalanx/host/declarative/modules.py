"""`test-modules:`: the test object and the modules, found by `typename`.

Built-in names: `ProcessTest` (the test object) and `EventActionModule`
(also as `phalanx.ProcessTest`, `phalanx.EventActionModule`). Any other
typename is `module.Class`, imported from the test's folder, the tree's
root, or anywhere on the Python path. A module class is called as
`Class(config_section, test_object)`, like Asterisk's pluggable modules.
"""

from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path
from typing import Any

from phalanx.host.declarative.testobject import ProcessTest
from phalanx.kinds.declarative import eventaction
from phalanx.kinds.declarative.events import Event, TimerFired


class EventActionModule:
    """Sets of `event → actions` (see `eventaction`); each set with an
    expectation holds a fail token until the test ends with it met."""

    def __init__(self, config: Any, test: ProcessTest) -> None:
        self.test = test
        self.sets = eventaction.parse(config)
        self.counter = 0
        test.subscribe(self.on_event)
        self.token = test.create_fail_token("event/action expectations not checked")
        for name, seconds in self.sets.timers().items():
            test.call_later(seconds, functools.partial(self.on_event, TimerFired(name)))

    def on_event(self, event: Event) -> None:
        for action in self.sets.feed(event):
            self.act(action)
        # Checked after every event, so a token reflects what is unmet now;
        # the test reads the tokens when it ends.
        self.test.remove_fail_token(self.token)
        unmet = self.sets.unmet()
        if unmet:
            self.token = self.test.create_fail_token("; ".join(unmet))

    def act(self, action: eventaction.Action) -> None:
        value = action.value
        if action.kind == "logger":
            self.test.log(str(value if value is not None else ""))
        elif action.kind == "run":
            self.counter += 1
            if isinstance(value, dict):
                name = str(value.get("name") or f"run-{self.counter}")
                self.test.start_process(name, str(value["command"]), None)
            else:
                self.test.start_process(f"run-{self.counter}", str(value), None)
        elif action.kind == "stop_test":
            self.test.stop_test()
        elif action.kind == "fail":
            self.test.fail(str(value or "failed by an event/action set"))


BUILT_IN: dict[str, type] = {
    "ProcessTest": ProcessTest,
    "EventActionModule": EventActionModule,
}


def resolve(typename: str, search: list[Path]) -> Any:
    """The class a typename names. Raises LookupError saying why not."""
    short = typename.removeprefix("phalanx.")
    if short in BUILT_IN:
        return BUILT_IN[short]
    module_name, _, attr = typename.rpartition(".")
    if not module_name:
        known = ", ".join(BUILT_IN)
        raise LookupError(f"typename {typename!r}: not built in ({known}) and not module.Class")
    for folder in reversed(search):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LookupError(f"typename {typename!r}: cannot import {module_name}: {exc}") from None
    found = getattr(module, attr, None)
    if found is None:
        raise LookupError(f"typename {typename!r}: {module_name} has no {attr}")
    return found
