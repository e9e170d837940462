"""Extra listeners of a coordinator, one per address (a provider's bridge,
a kept cluster's network), open while anyone holds it: a kept cluster's
agents keep the address and port they were booted with."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager


class SharedListeners:
    """One extra listener per address, open while anyone holds it: a kept
    cluster's agents keep the address and port they were booted with."""

    def __init__(self, listen: Callable[[str], AbstractAsyncContextManager[int]]) -> None:
        self._listen = listen
        self._open: dict[str, tuple[contextlib.AsyncExitStack, int, int]] = {}

    async def acquire(self, address: str) -> int:
        if address in self._open:
            stack, port, count = self._open[address]
            self._open[address] = (stack, port, count + 1)
            return port
        stack = contextlib.AsyncExitStack()
        port = await stack.enter_async_context(self._listen(address))
        self._open[address] = (stack, port, 1)
        return port

    async def release(self, address: str) -> None:
        stack, port, count = self._open[address]
        if count > 1:
            self._open[address] = (stack, port, count - 1)
            return
        del self._open[address]
        await stack.aclose()

    @contextlib.asynccontextmanager
    async def hold(self, address: str) -> AsyncIterator[int]:
        port = await self.acquire(address)
        try:
            yield port
        finally:
            await self.release(address)
