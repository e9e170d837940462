"""The coordinator's side runs on asyncio's own loop (phalanx/aio.py,
phalanx/loops.py): a program it starts that daemonizes must not keep the
output it reads open. On uvloop it did: `podman run -d`'s conmon held a
second descriptor of the client's output socket, and no container host
came up."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from phalanx import aio

# The child leaves a grandchild behind with its standard streams on
# /dev/null, as a daemon does, then says where it is and exits.
DAEMONIZES = "(exec </dev/null >/dev/null 2>&1; exec sleep 60) & echo $!"


def test_a_program_that_daemonizes_ends_its_output_when_it_exits(tmp_path: Path) -> None:
    async def started() -> bytes:
        process = await asyncio.create_subprocess_exec(
            "sh", "-c", DAEMONIZES,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(process.communicate(), 20)
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the sleeper shares the group
        return out

    out = aio.run(started())
    assert out.strip().isdigit()
