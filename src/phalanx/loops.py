"""Which event loop a long-lived phalanx process runs: uvloop when it is
installed (libuv's loop: a lockstep stage's turns of the loop in the
coordinator and in every agent cost a fraction of asyncio's pure-Python
ones), asyncio's own otherwise, or when `PHALANX_LOOP=asyncio` asks for it
(to tell a loop's bug from phalanx's)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOP_ENV = "PHALANX_LOOP"  # "asyncio": asyncio's own loop even where uvloop is installed


def factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes this process's loop; None: asyncio's default."""
    if os.environ.get(LOOP_ENV) == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on the loop `factory` picks."""
    with asyncio.Runner(loop_factory=factory()) as runner:
        return runner.run(main)
