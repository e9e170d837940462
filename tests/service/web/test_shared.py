"""Many readers of one page share one gathering of its data: those that
come while it is gathered, and those within `fresh` seconds while its key
holds; a new key or a failed gathering is gathered again."""

from __future__ import annotations

import asyncio

import pytest

from phalanx.service.web.shared import Shared


class Source:
    def __init__(self) -> None:
        self.gathered = 0
        self.key = "a"
        self.now = 0.0
        self.fail = False
        self.gate = asyncio.Event()

    async def gather(self) -> int:
        self.gathered += 1
        await self.gate.wait()
        if self.fail:
            raise OSError("the store is down")
        return self.gathered


async def test_readers_at_once_share_one_gathering_and_later_ones_a_fresh_one() -> None:
    source = Source()
    shared = Shared(
        source.gather, lambda: source.key, fresh=1.0, stale=0.0, clock=lambda: source.now
    )
    readers = [asyncio.ensure_future(shared.get()) for _ in range(50)]
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*readers) == [1] * 50
    source.now = 0.5
    assert await shared.get() == 1  # fresh enough, same key
    source.key = "b"
    assert await shared.get() == 2  # what the page shows changed
    source.now = 2.0
    assert await shared.get() == 3  # too old
    assert source.gathered == 3


async def test_a_stale_answer_is_handed_out_while_the_next_is_gathered_once() -> None:
    source = Source()
    source.gate.set()
    shared = Shared(
        source.gather, lambda: source.key, fresh=1.0, stale=2.0, clock=lambda: source.now
    )
    assert await shared.get() == 1
    source.now = 1.5
    source.gate.clear()  # the next gathering takes its time
    assert [await shared.get() for _ in range(5)] == [1] * 5  # no reader waits for it
    await asyncio.sleep(0)  # the gathering starts
    assert source.gathered == 2  # one gathering behind them all
    source.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await shared.get() == 2  # taken once ready
    source.key = "b"
    source.gate.clear()
    waiting = asyncio.ensure_future(shared.get())
    await asyncio.sleep(0)
    assert not waiting.done()  # a new key is always waited for
    source.gate.set()
    assert await waiting == 3
    source.now = 10.0  # too old even to hand out stale
    assert await shared.get() == 4


async def test_a_reader_that_leaves_does_not_cancel_the_others() -> None:
    source = Source()
    shared = Shared(source.gather, lambda: source.key, clock=lambda: source.now)
    leaving = asyncio.ensure_future(shared.get())
    staying = asyncio.ensure_future(shared.get())
    await asyncio.sleep(0)
    leaving.cancel()
    source.gate.set()
    assert await staying == 1


async def test_a_failed_gathering_is_not_kept() -> None:
    source = Source()
    shared = Shared(source.gather, lambda: source.key, clock=lambda: source.now)
    source.fail = True
    source.gate.set()
    with pytest.raises(OSError):
        await shared.get()
    source.fail = False
    assert await shared.get() == 2


async def test_an_answer_too_old_to_hand_out_waits_for_the_gathering_under_way() -> None:
    """Under load a gathering can outlast `stale`: readers then wait for it,
    and no second gathering starts beside it."""
    source = Source()
    source.gate.set()
    shared = Shared(
        source.gather, lambda: source.key, fresh=1.0, stale=2.0, clock=lambda: source.now
    )
    assert await shared.get() == 1
    source.now = 1.5
    source.gate.clear()
    assert await shared.get() == 1  # stale, handed out; the next is gathered behind it
    await asyncio.sleep(0)
    source.now = 5.0  # that gathering is still under way, and the answer too old
    waiting = [asyncio.ensure_future(shared.get()) for _ in range(10)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiting)
    assert source.gathered == 2  # no second gathering
    source.gate.set()
    assert await asyncio.gather(*waiting) == [2] * 10
