"""What the service keeps in memory so that fifty readers cost one.

- `Lru`: answers that never change once made (an ended run's document, its
  rendered report parts, a suite's history of ended runs), bounded by count.
- `Recent`: answers that may change (who a token or a session is), kept for
  a fraction of a second and forgotten at once when the service itself
  changes them; another process's change (a `phalanx user` command) is seen
  within `ttl`. Readers asking together while none is kept wait for one
  look-up between them (`fetch`): fifty requests of one browser or script
  whose answer just went stale are one store query, not fifty at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most `size` entries; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: K, value: V) -> V:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[K]:
        return list(self._entries)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)


class Recent(Generic[K, V]):
    """Answers kept for `ttl` seconds, at most `size` of them."""

    def __init__(
        self, ttl: float, size: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.size, self._clock = ttl, size, clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._looking: dict[K, asyncio.Future[V]] = {}
        # Bumped by `clear`: a look-up begun before it is not kept after it.
        self._generation = 0

    def get(self, key: K) -> tuple[V] | None:
        """(the answer,) while fresh; None when there is none or it is stale
        (a tuple, so that None can be an answer: "no such token")."""
        found = self._entries.get(key)
        if found is None:
            return None
        if self._clock() - found[0] >= self.ttl:
            del self._entries[key]
            return None
        return (found[1],)

    def put(self, key: K, value: V) -> V:
        if len(self._entries) >= self.size:
            self._entries.clear()  # a flood of unknown tokens costs a re-check, not memory
        self._entries[key] = (self._clock(), value)
        return value

    async def fetch(self, key: K, look: Callable[[], Awaitable[V]]) -> V:
        """The answer for `key`: kept, or looked up by `look` once for every
        reader asking while it is looked up (a reader going away does not
        cancel the others' look-up; a failed one is kept for no one)."""
        if (known := self.get(key)) is not None:
            return known[0]
        looking = self._looking.get(key)
        if looking is None:
            looking = asyncio.ensure_future(look())
            self._looking[key] = looking
            generation = self._generation

            def done(future: asyncio.Future[V]) -> None:
                if self._looking.get(key) is future:
                    del self._looking[key]
                if (
                    generation == self._generation
                    and not future.cancelled()
                    and future.exception() is None
                ):
                    self.put(key, future.result())

            looking.add_done_callback(done)
        return await asyncio.shield(looking)

    def clear(self) -> None:
        """Forget every answer, and every look-up under way: a reader asking
        after this waits for one begun after it."""
        self._entries.clear()
        self._looking.clear()
        self._generation += 1


# An ended run's document is some hundred kilobytes of objects: a few dozen
# of the most read are kept.
ENDED_RUNS = 64
SUITE_HISTORIES = 64


class ServiceCaches:
    """The service's caches of what never changes once made."""

    def __init__(self) -> None:
        # (run id, output tail) -> an ended run's summary and document (documents.py)
        self.documents: Lru[tuple[str, int], tuple[Any, dict[str, Any]]] = Lru(ENDED_RUNS)
        # (suite, its ended runs' ids) -> its history and that section of its page (web/)
        self.histories: Lru[tuple[str, tuple[str, ...]], object] = Lru(SUITE_HISTORIES)
        self.history_html: Lru[tuple[str, tuple[str, ...]], str] = Lru(SUITE_HISTORIES)

    def forget(self, run_ids: list[str]) -> None:
        """Runs that are gone (retention removed them): nothing of them is served."""
        gone = set(run_ids)
        for key in [k for k in self.documents.keys() if k[0] in gone]:  # noqa: SIM118 (not a dict)
            self.documents.drop(key)
