"""`asyncio.run` for coroutines that return big objects.

On Python 3.11, `asyncio.run` asks `signal.getsignal(SIGINT)` whether its own
handler is still installed; the handler is a partial holding the main task,
and `signal` builds a ValueError message from the task's repr, which includes
the repr of its result. For a run of 500 tests that repr costs ~25 ms, twice.
Handing the value out through a closure keeps the task's result `None`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    box: list[T] = []

    async def main() -> None:
        box.append(await coro)

    asyncio.run(main())
    return box[0]
