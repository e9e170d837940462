"""`asyncio.run` for coroutines that return big objects.

On Python 3.11, `asyncio.run` asks `signal.getsignal(SIGINT)` whether its own
handler is still installed; the handler is a partial holding the main task,
and `signal` builds a ValueError message from the task's repr, which includes
the repr of its result. For a run of 500 tests that repr costs ~25 ms, twice.
Handing the value out through a closure keeps the task's result `None`.

And `interrupts`: how a run hears Ctrl-C (and SIGTERM) as a request to
stop, at the edge, so that the engines only ever see the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    box: list[T] = []

    async def main() -> None:
        box.append(await coro)

    # asyncio's own loop, not uvloop (phalanx/loops.py says why): the runs,
    # providers and commands here start engines' and tools' processes.
    asyncio.run(main())
    return box[0]


@contextlib.contextmanager
def interrupts(
    cancel: Callable[[str], None],
    abort: Callable[[str], None],
    grace: float,
    on_first: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """While the block runs (inside the event loop), SIGINT and SIGTERM
    stop the work instead of killing the process: the first signal calls
    `cancel("cancelled by SIGINT")` and, `grace` seconds later, `abort`;
    a second signal calls `abort` at once. `on_first` hears the first one
    (to tell the user what happens now)."""
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []

    def on_signal(number: int) -> None:
        name = signal.Signals(number).name
        if not timers:
            reason = f"cancelled by {name}"
            cancel(reason)
            timers.append(loop.call_later(grace, abort, f"the cancel grace of {grace:g}s ran out"))
            if on_first is not None:
                on_first(reason)
        else:
            abort(f"a second signal ({name})")

    handled = (signal.SIGINT, signal.SIGTERM)
    for number in handled:
        loop.add_signal_handler(number, on_signal, number)
    try:
        yield
    finally:
        for number in handled:
            loop.remove_signal_handler(number)
        for timer in timers:
            timer.cancel()
