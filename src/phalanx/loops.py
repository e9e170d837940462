"""Which event loop an agent runs: uvloop when it is installed (libuv's
loop: a lockstep stage's turns of the loop in every agent cost a fraction of
asyncio's pure-Python ones), asyncio's own otherwise, or when
`PHALANX_LOOP=asyncio` asks for it (to tell a loop's bug from phalanx's).

Only the agents. uvloop gives a subprocess's pipes as a socket pair and
leaves a second descriptor of it open in the child (uvloop 0.22: fd 1 and,
say, fd 15 are the same socket, `close_fds` or not). A child that
daemonizes hands that descriptor on: `podman run -d`'s conmon kept it, so
reading the client's output never ended and no container host came up.
The coordinator's side (`phalanx run`, its providers, `cleanup`, image
builds: phalanx/aio.py) starts such programs, so it stays on asyncio's
loop. An agent starts its stages with its own spawn (host/process.py),
not through the loop."""

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
