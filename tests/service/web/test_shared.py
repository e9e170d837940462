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
    shared = Shared(source.gather, lambda: source.key, fresh=1.0, clock=lambda: source.now)
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
