"""One gathering of a page's data for many readers at once.

Fifty browsers on the dashboard ask for the same thing: the store's recent
runs, each suite's strip, the agents. `Shared` gathers it once for all the
requests that come while it is being gathered, and hands the same answer
to those that come within `fresh` seconds after, as long as the page's
key (what the service holds in memory that the page shows: its active
runs and how far each has come, the connected agents, the catalogs) is the
same. A page is then at most `fresh` seconds behind the store, and its live
stream shows the rest.

An answer older than `fresh` (with the key unchanged) is still handed out
for `stale` seconds more while the next one is gathered in the background:
readers of a busy page never all wait for a gathering that only refreshes
what they would see anyway (the dashboard's takes half a second under
load). A new key is always waited for. An answer too old even for that
waits for the gathering under way, if there is one: under load a gathering
can take longer than `stale`, and a second one beside it would only slow
both (and every reader with them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Shared(Generic[T]):
    def __init__(
        self,
        gather: Callable[[], Awaitable[T]],
        key: Callable[[], Hashable],
        *,
        fresh: float = 1.0,
        stale: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gather, self._key, self._fresh, self._clock = gather, key, fresh, clock
        self._stale = stale
        self._last: tuple[Hashable, float, asyncio.Future[T]] | None = None
        # (its key, it) gathered behind a stale answer
        self._next: tuple[Hashable, asyncio.Future[T]] | None = None

    async def get(self) -> T:
        key, now = self._key(), self._clock()
        if self._last is not None:
            last_key, at, future = self._last
            if last_key == key and (not future.done() or now - at < self._fresh):
                # Shielded: a reader that goes away does not cancel the
                # others' gathering.
                return await asyncio.shield(future)
            if (
                last_key == key
                and now - at < self._fresh + self._stale
                and not future.cancelled()
                and future.exception() is None
            ):
                self._refresh(key, now)
                return future.result()
        if self._next is not None and self._next[0] == key and not self._next[1].done():
            return await asyncio.shield(self._next[1])
        future = asyncio.ensure_future(self._gather())
        self._last = (key, now, future)
        # A failed gathering (the store down) is not kept for the next reader.
        future.add_done_callback(self._forget_failure)
        return await asyncio.shield(future)

    def _refresh(self, key: Hashable, now: float) -> None:
        """The next answer for `key`, gathered once behind the stale one and
        taken when it is ready (if the key still holds)."""
        if self._next is not None and not self._next[1].done():
            return
        future = asyncio.ensure_future(self._gather())
        self._next = (key, future)

        def ready(done: asyncio.Future[T]) -> None:
            if done.cancelled() or done.exception() is not None:
                return  # the stale one stays until it is too old
            if self._last is not None and self._last[0] == key:
                self._last = (key, now, done)

        future.add_done_callback(ready)

    def _forget_failure(self, future: asyncio.Future[T]) -> None:
        if (future.cancelled() or future.exception() is not None) and (
            self._last is not None and self._last[2] is future
        ):
            self._last = None
