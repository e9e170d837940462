r"""The event/action module's logic: sets that map an event to actions.

```yaml
event-action-config:
    -
        process-output: {process: server, match: 'listening on (\d+)', count: 1}
        logger: 'the server is up'
        run: 'echo hello | nc localhost 9999'
    -
        process-output: [{match: 'step one'}, {match: 'step two'}]   # in this order
        stop_test:
```

Events: `test-start`, `process-output` (`process`, regex `match`, `count`),
`process-exit` (`process`, `exit-code`, `count`), `timer` (`seconds`, or a
number). A single event pattern fires its actions on every match; with a
`count` (default for output and exit: at least once) it is also an
expectation, checked when the test ends. A list of patterns must be seen in
order; its actions fire when the last one is seen. Actions: `logger: TEXT`,
`run: COMMAND` (or `{name, command}`), `stop_test:`, `fail: MESSAGE`.

No I/O here: `feed` returns the actions to take; the module takes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from phalanx.kinds.declarative import counts
from phalanx.kinds.declarative.counts import Count
from phalanx.kinds.declarative.events import (
    Event,
    ProcessExited,
    ProcessOutput,
    TestStarted,
    TimerFired,
)

EVENTS = ("test-start", "process-output", "process-exit", "timer")
ACTIONS = ("logger", "run", "stop_test", "fail")


class ConfigError(ValueError):
    """A problem with a key path into the module's config section."""

    def __init__(self, message: str, *path: str | int) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Pattern:
    event: str
    process: str | None = None
    match: re.Pattern[str] | None = None
    exit_code: int | None = None
    timer: str | None = None

    def matches(self, event: Event) -> bool:
        if self.event == "test-start":
            return isinstance(event, TestStarted)
        if self.event == "timer":
            return isinstance(event, TimerFired) and event.name == self.timer
        if self.event == "process-output":
            return (
                isinstance(event, ProcessOutput)
                and self.process in (None, event.process)
                and (self.match is None or self.match.search(event.line) is not None)
            )
        return (
            isinstance(event, ProcessExited)
            and self.process in (None, event.process)
            and self.exit_code in (None, event.exit_code)
        )

    def describe(self) -> str:
        parts = [self.event]
        if self.process:
            parts.append(f"of {self.process}")
        if self.match is not None:
            parts.append(f"matching {self.match.pattern!r}")
        if self.exit_code is not None:
            parts.append(f"with exit code {self.exit_code}")
        return " ".join(parts)


@dataclass(frozen=True)
class Action:
    kind: str  # logger, run, stop_test, fail
    value: Any


@dataclass
class EventSet:
    index: int
    patterns: tuple[Pattern, ...]  # more than one: in this order
    actions: tuple[Action, ...]
    count: Count | None
    timer_seconds: float | None = None
    seen: int = 0  # single pattern: matches; sequence: completions
    step: int = 0  # sequence: the next pattern to see

    def feed(self, event: Event) -> list[Action]:
        if not self.patterns[self.step].matches(event):
            return []
        if len(self.patterns) > 1:
            self.step += 1
            if self.step < len(self.patterns):
                return []
            self.step = 0
        self.seen += 1
        return list(self.actions)

    def unmet(self) -> str | None:
        """Why this set's expectation is not met now (None: it is)."""
        if len(self.patterns) > 1:
            if self.seen == 0:
                missing = self.patterns[self.step].describe()
                return (
                    f"set {self.index}: ordered events not all seen (still waiting for {missing})"
                )
            return None
        if self.count is None or self.count.met(self.seen):
            return None
        return (
            f"set {self.index}: {self.patterns[0].describe()} expected "
            f"{self.count.describe()}, seen {self.seen}"
        )


@dataclass
class Sets:
    sets: list[EventSet] = field(default_factory=list)

    def feed(self, event: Event) -> list[Action]:
        return [a for s in self.sets for a in s.feed(event)]

    def unmet(self) -> list[str]:
        return [why for s in self.sets if (why := s.unmet()) is not None]

    def timers(self) -> dict[str, float]:
        return {
            f"timer-{s.index}": s.timer_seconds for s in self.sets if s.timer_seconds is not None
        }


def parse(config: Any) -> Sets:
    """The sets of an `event-action-config` list; ConfigError on the first problem."""
    if not isinstance(config, list):
        raise ConfigError("must be a list of event/action sets")
    return Sets([_set(index, item) for index, item in enumerate(config)])


def _set(index: int, item: Any) -> EventSet:
    if not isinstance(item, dict):
        raise ConfigError("must be a mapping of one event and its actions", index)
    events = [k for k in item if k in EVENTS]
    unknown = [k for k in item if k not in EVENTS and k not in ACTIONS]
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} (events: {', '.join(EVENTS)}; actions: "
            f"{', '.join(ACTIONS)})",
            index,
            str(unknown[0]),
        )
    if len(events) != 1:
        raise ConfigError(f"needs exactly one event ({', '.join(EVENTS)})", index)
    event = events[0]
    actions = tuple(_action(index, k, v) for k, v in item.items() if k in ACTIONS)
    raw = item[event]
    timer_seconds: float | None = None
    count: Count | None = None
    if event == "timer":
        timer_seconds = _timer(raw, index)
        patterns: tuple[Pattern, ...] = (Pattern("timer", timer=f"timer-{index}"),)
    elif event == "test-start":
        patterns = (Pattern("test-start"),)
    elif isinstance(raw, list):
        if not raw:
            raise ConfigError("an ordered list needs at least one pattern", index, event)
        patterns = tuple(_pattern(event, p, index, event, n)[0] for n, p in enumerate(raw))
    else:
        pattern, count = _pattern(event, raw, index, event)
        patterns = (pattern,)
    return EventSet(index, patterns, actions, count, timer_seconds)


def _timer(raw: Any, index: int) -> float:
    value = raw.get("seconds") if isinstance(raw, dict) else raw
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError("must be a number of seconds (or `seconds: N`)", index, "timer")
    return float(value)


def _pattern(event: str, raw: Any, *path: str | int) -> tuple[Pattern, Count | None]:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping (process, match, exit-code, count)", *path)
    known = {"process", "count"} | ({"match"} if event == "process-output" else {"exit-code"})
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(known))})", *path, key)
    try:
        count = counts.parse(raw["count"]) if "count" in raw else counts.AT_LEAST_ONCE
    except ValueError as exc:
        raise ConfigError(str(exc), *path, "count") from None
    match = None
    if raw.get("match") is not None:
        try:
            match = re.compile(str(raw["match"]))
        except re.error as exc:
            raise ConfigError(f"not a regular expression: {exc}", *path, "match") from None
    exit_code = raw.get("exit-code")
    if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)):
        raise ConfigError("must be a number", *path, "exit-code")
    process = raw.get("process")
    return Pattern(event, str(process) if process else None, match, exit_code), count


def _action(index: int, kind: str, value: Any) -> Action:
    if kind in ("logger", "fail") and value is not None and isinstance(value, dict | list):
        raise ConfigError("must be a message", index, kind)
    if kind == "run":
        if isinstance(value, dict):
            if not value.get("command"):
                raise ConfigError("needs a command", index, kind)
        elif not isinstance(value, str) or not value:
            raise ConfigError("must be a command (or `{name, command}`)", index, kind)
    return Action(kind, value)
