"""The service's in-memory caches: bounded, and fresh only as long as told."""

from __future__ import annotations

from phalanx.service.caches import Lru, Recent, ServiceCaches


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
