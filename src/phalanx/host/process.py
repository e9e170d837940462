"""Process groups: every stage runs in a session of its own, so that a
timeout or a shutdown ends the whole tree it started, grandchildren included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
READ_SIZE = 64 * 1024


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def kill_group(pgid: int, grace: float = KILL_GRACE) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after `grace`."""
    signal_group(pgid, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + grace
    while group_alive(pgid) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    signal_group(pgid, signal.SIGKILL)


class GroupLedger:
    """The process groups an agent started, on disk, so that whoever cleans up
    after an agent killed with -9 (the provider) can still end them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.groups: set[int] = set()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a")

    def add(self, pgid: int) -> None:
        self.groups.add(pgid)
        self._file.write(f"{pgid}\n")
        self._file.flush()

    def kill_all(self) -> None:
        for pgid in self.groups | read_ledger(self.path):
            signal_group(pgid, signal.SIGKILL)
        self._file.close()


def read_ledger(path: Path) -> set[int]:
    try:
        return {int(line) for line in path.read_text().split() if line.isdigit()}
    except FileNotFoundError:
        return set()


def ledger_path(workdir: Path) -> Path:
    return workdir / ".phalanx" / "groups"


class Child:
    """A process started in a session of its own, whose exit and whose output
    are awaited separately: a background grandchild holding the output pipe
    must not make the exit wait (asyncio's Process.wait() does, on 3.11).

    The exit is seen through a pidfd and the output through the pipe's own
    fd, both on the loop's selector: no transport, no child watcher thread,
    no extra loop turn to connect a pipe."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        output: int,
        on_output: Callable[[bytes], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.exited: asyncio.Future[None] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._on_output = on_output
        self._output = output
        os.set_blocking(output, False)
        loop.add_reader(output, self._on_readable)
        self._pidfd = os.pidfd_open(popen.pid)
        loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self.popen.wait()
        if not self.exited.done():
            self.exited.set_result(None)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._output, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self._on_output(data)
            return
        self._loop.remove_reader(self._output)
        os.close(self._output)
        if not self.output_closed.done():
            self.output_closed.set_result(None)

    def pause_output(self) -> None:
        """Stop reading the output until `resume_output`: a program that
        writes on blocks once the pipe is full."""
        if not self.output_closed.done():
            self._loop.remove_reader(self._output)

    def resume_output(self) -> None:
        if not self.output_closed.done():
            self._loop.add_reader(self._output, self._on_readable)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode


def spawn(
    command: list[str], cwd: Path, env: dict[str, str], on_output: Callable[[bytes], None]
) -> Child:
    """Start `command` in a new session (its own process group), stdout and
    stderr merged into `on_output`. Raises OSError if it cannot start. Call
    it from the event loop's thread."""
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        popen = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end,
            start_new_session=True,
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)  # the child has its copy; EOF comes when the last holder exits
    return Child(popen, read_end, on_output, loop)
