"""The event loop a VM test's synchronous calls run on: one thread of its
own per test process. A test calls `vm.power_on()`; the call hands the
coroutine to this loop and waits for its result, with a timeout."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from phalanx.virt.exceptions import TestError

T = TypeVar("T")


class Loop:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="phalanx-virt-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        """The coroutine's result; TestError when it takes longer than
        `timeout` seconds (it is cancelled)."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TestError(f"{what} did not finish within {timeout:g}s") from None

    def close(self, timeout: float = 10.0) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()
