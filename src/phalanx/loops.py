"""Which event loop an agent runs: asyncio's own, or uvloop when
`PHALANX_LOOP=uvloop` asks for it and it is installed (libuv's loop: a
lockstep stage's turns of the loop in every agent cost about a fifth less).

Opt-in, not the default. uvloop gives a subprocess's pipes as a socket
pair and leaves a second descriptor of it open in the child (uvloop 0.22:
fd 1 and, say, fd 15 are the same socket, `close_fds` or not); a child that
daemonizes hands it on (`podman run -d`'s conmon kept it, so reading the
client's output never ended). And with agents on uvloop, two tests that
had passed for many stops hung now and then in CI (a TLS agent and
`submit --wait`; a netns run inside a VM), which asyncio's loop never did.
The coordinator's side (phalanx/aio.py) always runs on asyncio's loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOP_ENV = "PHALANX_LOOP"  # "uvloop": uvloop where it is installed; else asyncio's own loop


def factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes this process's loop; None: asyncio's default."""
    if os.environ.get(LOOP_ENV) != "uvloop":
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
