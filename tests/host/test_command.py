"""One stage command, supervised: cancel, silence, output that arrives in
pieces, a background process that keeps the pipe. Real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from phalanx.host.command import run_command
from phalanx.host.context import RunnerContext, set_signal
from phalanx.host.process import GroupLedger
from phalanx.tasks import Outcome
from tests.eventually import eventually_async


def context(tmp_path: Path, out: list[bytes], timeout: float = 30.0) -> RunnerContext:
    return RunnerContext(
        stage_id="s",
        scope="r:1:case",
        env=dict(os.environ),
        cwd=tmp_path,
        scratch_root=tmp_path / "scratch",
        timeout=timeout,
        output=out.append,
        ledger=GroupLedger(tmp_path / "groups"),
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    return state != "Z"


async def test_a_cancel_ends_the_whole_group(tmp_path: Path) -> None:
    out: list[bytes] = []
    ctx = context(tmp_path, out)
    script = "sleep 60 & echo $! > bg.pid; echo started; wait"
    task = asyncio.create_task(run_command(ctx, ["sh", "-c", script]))
    await eventually_async(lambda: out, within=10, what="the script's first line")
    set_signal(ctx.cancelled)
    result = await asyncio.wait_for(task, 10)
    assert result.cancelled and not result.timed_out
    grandchild = int((tmp_path / "bg.pid").read_text())
    await eventually_async(lambda: not alive(grandchild), within=5, what="the grandchild ended")


async def test_silence_is_a_timeout_that_says_so(tmp_path: Path) -> None:
    out: list[bytes] = []
    # Talks for a while, then goes quiet: only the quiet part counts.
    script = "for i in 1 2 3 4 5; do echo $i; sleep 0.1; done; sleep 60"
    started = time.monotonic()
    result = await run_command(context(tmp_path, out), ["sh", "-c", script], inactivity=0.4)
    assert result.timed_out and result.exit_code == 128 + signal.SIGTERM
    assert "no output for 0.4s" in str(result.data)
    assert b"".join(out).split() == [b"1", b"2", b"3", b"4", b"5"]
    assert time.monotonic() - started < 5


async def test_a_character_split_across_reads_arrives_whole(tmp_path: Path) -> None:
    out: list[bytes] = []
    # "é" is two bytes; printf writes them in two writes, a moment apart.
    script = r"printf '\303'; sleep 0.2; printf '\251\n'"
    result = await run_command(context(tmp_path, out), ["sh", "-c", script])
    assert result == Outcome(exit_code=0)
    assert b"".join(out).decode() == "é\n"


async def test_a_background_process_holding_the_pipe_does_not_hold_the_stage(
    tmp_path: Path,
) -> None:
    out: list[bytes] = []
    script = "sleep 60 & echo $! > bg.pid; echo done"
    started = time.monotonic()
    result = await run_command(context(tmp_path, out), ["sh", "-c", script])
    assert result.exit_code == 0 and b"".join(out) == b"done\n"
    assert time.monotonic() - started < 5
    # A stage script may leave a server for later stages: it is still there.
    pid = int((tmp_path / "bg.pid").read_text())
    assert alive(pid)
    os.killpg(os.getpgid(pid), signal.SIGKILL)


async def test_a_backlog_pauses_reading_without_losing_output_or_counting_as_silence(
    tmp_path: Path,
) -> None:
    """Whoever takes the output is behind: the pipe is not read (the program
    blocks on it) until the backlog clears; then every byte still arrives."""
    out: list[bytes] = []
    ctx = context(tmp_path, out)
    loop = asyncio.get_running_loop()
    paused: list[float] = []

    def backlog() -> asyncio.Future[None] | None:
        if paused:
            return None
        paused.append(loop.time())
        behind: asyncio.Future[None] = loop.create_future()
        loop.call_later(0.6, behind.set_result, None)
        return behind

    ctx.backlog = backlog
    times: list[float] = []

    def output(data: bytes) -> None:
        times.append(loop.time())
        out.append(data)

    ctx.output = output
    size = 4 * 1024 * 1024
    result = await run_command(
        ctx, ["sh", "-c", f"head -c {size} /dev/zero; echo done"], inactivity=0.3
    )
    assert result == Outcome(exit_code=0)
    assert b"".join(out) == b"\0" * size + b"done\n"
    assert len(paused) == 1
    assert times[1] - times[0] >= 0.5  # nothing was read while it was behind
