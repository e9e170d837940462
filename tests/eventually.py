"""One way for a test to wait for something that happens elsewhere (a
process, a service, another task): `eventually` asks again until the answer
is truthy and returns it, or fails, within a bound, saying what it waited
for and what it saw last. Checking that something does *not* happen is not
this: wait for the event that would come before it, or watch a bounded
window with `never`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

EVERY = 0.05  # seconds between two looks


class NotYet(AssertionError):
    """What a test waited for did not come within its bound."""


class _Bound:
    """What one wait has seen, and its end."""

    def __init__(self, within: float, what: str) -> None:
        self.within, self.what = within, what
        self.deadline = time.monotonic() + within
        self.last: object = None

    def missed(self, seen: object) -> None:
        """`seen` was not it: fail if time is up."""
        self.last = seen
        if time.monotonic() >= self.deadline:
            raise NotYet(f"{self.what or 'the condition'} not within {self.within:g}s; "
                         f"last: {self.last!r}")  # fmt: skip


def eventually(check: Callable[[], T | None], *, within: float = 30.0, what: str = "") -> T:
    """`check()` until it returns something truthy (returned), for at most
    `within` seconds. An AssertionError `check` raises counts as "not yet"
    (and the last one is shown if time runs out); any other error fails."""
    bound = _Bound(within, what)
    while True:
        try:
            if answer := check():
                return answer
            bound.missed(answer)
        except NotYet:
            raise
        except AssertionError as exc:
            bound.missed(exc)
        time.sleep(EVERY)


async def eventually_async(
    check: Callable[[], T | Awaitable[T | None] | None], *, within: float = 30.0, what: str = ""
) -> T:
    """`eventually` inside an event loop: `check` may be a coroutine
    function, and the loop runs while this waits."""
    bound = _Bound(within, what)
    while True:
        try:
            answer = check()
            if isinstance(answer, Awaitable):
                answer = await answer
            if answer:
                return answer
            bound.missed(answer)
        except NotYet:
            raise
        except AssertionError as exc:
            bound.missed(exc)
        await asyncio.sleep(EVERY)


async def never_async(
    check: Callable[[], object | Awaitable[object]], *, window: float, what: str = ""
) -> None:
    """`never` inside an event loop: the loop runs while this watches."""
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        answer = check()
        if isinstance(answer, Awaitable):
            answer = await answer
        if answer:
            raise AssertionError(f"{what or 'the condition'} happened: {answer!r}")
        await asyncio.sleep(EVERY)


def never(check: Callable[[], object], *, window: float, what: str = "") -> None:
    """`check()` stays falsy for the whole `window` (a bound a slow bug
    cannot pass by being slow: it is checked all along, not once at the end)."""
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        if answer := check():
            raise AssertionError(f"{what or 'the condition'} happened: {answer!r}")
        time.sleep(EVERY)
