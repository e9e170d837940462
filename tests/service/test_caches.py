"""The service's in-memory caches: bounded, and fresh only as long as told."""

from __future__ import annotations

import asyncio

import pytest

from phalanx.service.caches import Lru, Recent, ServiceCaches
from tests.eventually import eventually_async


def test_the_least_recently_used_goes_first() -> None:
    kept: Lru[str, int] = Lru(2)
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1  # "b" is now the least recently used
    kept.put("c", 3)
    assert (kept.get("a"), kept.get("b"), kept.get("c")) == (1, None, 3)
    assert len(kept) == 2


def test_a_recent_answer_is_kept_for_its_time_and_none_is_an_answer() -> None:
    now = [100.0]
    recent: Recent[str, str | None] = Recent(0.3, size=2, clock=lambda: now[0])
    recent.put("unknown", None)
    recent.put("known", "carol")
    assert recent.get("unknown") == (None,)  # known to be no one
    assert recent.get("known") == ("carol",)
    assert recent.get("never") is None  # not known: ask the store
    now[0] += 0.5
    assert recent.get("known") is None
    recent.put("a", "x")
    recent.put("b", "y")
    recent.put("c", "z")  # full: the rest is forgotten, not kept growing
    assert (recent.get("a"), recent.get("c")) == (None, ("z",))
    recent.clear()
    assert recent.get("c") is None


def test_runs_retention_removed_are_forgotten() -> None:
    caches = ServiceCaches()
    caches.documents.put(("r1", 100), ("summary 1", {"status": "passed"}))
    caches.documents.put(("r1", 200), ("summary 1", {"status": "passed"}))
    caches.documents.put(("r2", 100), ("summary 2", {"status": "failed"}))
    caches.forget(["r1"])
    assert caches.documents.keys() == [("r2", 100)]


async def test_readers_asking_together_wait_for_one_look_up() -> None:
    """Fifty requests whose answer just went stale are one store query."""
    recent: Recent[str, str | None] = Recent(0.3)
    looked: list[asyncio.Event] = []

    async def look() -> str:
        gate = asyncio.Event()
        looked.append(gate)
        await gate.wait()
        return f"carol {len(looked)}"

    readers = [asyncio.ensure_future(recent.fetch("token", look)) for _ in range(50)]
    await eventually_async(lambda: len(looked) == 1)
    looked[0].set()
    assert await asyncio.gather(*readers) == ["carol 1"] * 50
    assert await recent.fetch("token", look) == "carol 1"  # kept for its time
    assert len(looked) == 1


async def test_a_look_up_begun_before_a_clear_is_neither_kept_nor_joined_after_it() -> None:
    """A revoke here is seen at once, even by a reader who asks while an
    older look-up is under way."""
    recent: Recent[str, str | None] = Recent(60.0)
    answers = iter(["carol", None])  # before the revoke, after it
    gates: list[asyncio.Event] = []

    async def look() -> str | None:
        gate = asyncio.Event()
        gates.append(gate)
        answer = next(answers)
        await gate.wait()
        return answer

    before = asyncio.ensure_future(recent.fetch("token", look))
    await eventually_async(lambda: len(gates) == 1)
    recent.clear()  # the token was revoked
    after = asyncio.ensure_future(recent.fetch("token", look))
    await eventually_async(lambda: len(gates) == 2)
    for gate in gates:
        gate.set()
    assert (await before, await after) == ("carol", None)
    assert await recent.fetch("token", look) is None  # the old answer was not kept


async def test_a_failed_look_up_is_kept_for_no_one() -> None:
    recent: Recent[str, str] = Recent(60.0)
    calls = 0

    async def look() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("the store is down")
        return "carol"

    with pytest.raises(OSError):
        await recent.fetch("token", look)
    assert await recent.fetch("token", look) == "carol"
