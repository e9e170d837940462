"""Process groups: every stage runs in a session of its own, so that a
timeout or a shutdown ends the whole tree it started, grandchildren included.

And what leaves its group (`setsid`, a double fork): a process that runs
stages (the agent, a tree run) makes itself a child subreaper, so such
escapees are re-parented to it rather than to init; every stage process
carries its scope in its environment (`PHALANX_SCOPE`); when a scope ends,
`end_scope` ends its groups and the escapees that carry its mark."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from phalanx.host import beside

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
READ_SIZE = 64 * 1024
SCOPE_MARK = "PHALANX_SCOPE"  # in every stage process's environment: its scope
PR_SET_CHILD_SUBREAPER = 36

log = logging.getLogger("phalanx.agent")

# The children `spawn` started and has not waited for yet: any other child
# of a subreaper is an escapee, re-parented to it (or the zombie of one).
_spawned: set[int] = set()
_subreaper = False


def own(pid: int) -> None:
    """A child this process started for itself (a helper, not a stage):
    never taken for a stage's escapee. `disown` it once it is reaped."""
    _spawned.add(pid)


def disown(pid: int) -> None:
    _spawned.discard(pid)


def become_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux);
    whether it is. Elsewhere escapees are found by their mark alone."""
    global _subreaper
    if _subreaper:
        return True
    if sys.platform != "linux":
        log.info("not Linux: processes that leave their group are found by their mark only")
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.info("cannot become a child subreaper (errno %d)", ctypes.get_errno())
        return False
    _subreaper = True
    return True


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z...), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b") ", 1)[1][:1].decode()
    except (OSError, IndexError):
        return None


def stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP): it would not act on SIGTERM."""
    return _state(pid) in ("T", "t")


def _running(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def _marked(pid: int, mark: bytes, prefix: bool = False) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            items = f.read().split(b"\0")
    except OSError:
        return False
    return any(item == mark or (prefix and item.startswith(mark)) for item in items)


def _children() -> list[int]:
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for task in tasks:
        with contextlib.suppress(OSError):
            pids += [int(p) for p in _read(f"/proc/self/task/{task}/children").split()]
    return pids


def _read(path: str) -> bytes:
    """A whole /proc file, by the fd: a tree run asks for its children after
    every test, and a buffered file object costs twice the reading."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, READ_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def escapees(mark: bytes | None = None) -> list[int]:
    """This subreaper's children that `spawn` did not start (re-parented
    orphans of stages), those carrying `mark` (NAME=VALUE) if given.
    Zombies among them are reaped on the way."""
    found = []
    for pid in _children():
        if pid in _spawned:
            continue
        if not _running(pid):
            _reap(pid)
        elif mark is None or _marked(pid, mark):
            found.append(pid)
    return found


def marked(name: str, value: str, *, prefix: bool = False, uid: int | None = None) -> list[int]:
    """This user's (or `uid`'s) processes whose environment has NAME=VALUE
    (NAME=VALUE... with `prefix`), wherever they are in the process tree: a
    scan of /proc (under a millisecond for a hundred processes)."""
    mark, me = f"{name}={value}".encode(), os.getpid()
    uid = beside.stage_uid() if uid is None else uid
    found = []
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid and _marked(int(entry.name), mark, prefix):
                    found.append(int(entry.name))
    return found


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


async def end_processes(pids: Iterable[int], grace: float = KILL_GRACE) -> None:
    """SIGTERM each process and its group (unless it is this process's
    own), SIGKILL what is left after `grace`, and reap those that are this
    process's children."""
    pids = list(pids)
    if not pids:
        return
    own = os.getpgrp()

    def send(sig: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                pgid = os.getpgid(pid)
                if pgid != own:
                    os.killpg(pgid, sig)
                os.kill(pid, sig)

    send(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline and any(_running(pid) for pid in pids):
        await asyncio.sleep(0.02)
    send(signal.SIGKILL)
    for _ in range(50):  # SIGKILL is not instant: wait (briefly) to reap
        for pid in pids:
            _reap(pid)
        if not any(_state(pid) is not None and pid in _children() for pid in pids):
            break
        await asyncio.sleep(0.01)


def scope_left(scope: str, groups: Iterable[int] = ()) -> bool:
    """Whether a scope left anything running: one of its stages' groups, or
    a process carrying its mark. Most scopes leave nothing, and knowing that
    without a task keeps a case's end off the next stage's start."""
    if any(group_alive(pgid) for pgid in groups):
        return True
    mark = f"{SCOPE_MARK}={scope}".encode()
    return bool(escapees(mark) if _subreaper else marked(SCOPE_MARK, scope))


async def end_scope(scope: str, groups: Iterable[int] = (), grace: float = KILL_GRACE) -> None:
    """End what a scope left running: its stages' process groups, and the
    processes that left them but still carry the scope's mark."""
    alive = [pgid for pgid in groups if group_alive(pgid)]
    await asyncio.gather(*(kill_group(pgid, grace) for pgid in alive))
    mark = f"{SCOPE_MARK}={scope}".encode()
    for _ in range(8):  # ending an escapee re-parents its own children here
        found = escapees(mark) if _subreaper else marked(SCOPE_MARK, scope)
        if not found:
            return
        await end_processes(found, grace)


async def end_marked(
    name: str, value: str, grace: float = KILL_GRACE, uid: int | None = None
) -> None:
    """End every process of this user (or `uid`) that carries NAME=VALUE
    (e.g. after an agent killed with -9, the processes its stages left)."""
    for _ in range(8):
        found = marked(name, value, uid=uid)
        if not found:
            return
        await end_processes(found, grace)


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
        self.scopes: dict[str, set[int]] = {}  # scope -> its stages' groups not yet ended
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a")

    def add(self, pgid: int, scope: str | None = None) -> None:
        self.groups.add(pgid)
        if scope is not None:
            self.scopes.setdefault(scope, set()).add(pgid)
        self._file.write(f"{pgid}\n")
        self._file.flush()

    def take(self, scope: str) -> set[int]:
        """The groups of `scope`'s stages, forgotten here: the scope ends."""
        groups = self.scopes.pop(scope, set())
        self.groups -= groups
        return groups

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
        pid: int,
        popen: subprocess.Popen[bytes] | None,
        output: int,
        on_output: Callable[[bytes], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.popen = popen  # None: started by posix_spawn, reaped here
        self.pid = pid
        self._returncode: int | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._on_output = on_output
        self._output = output
        os.set_blocking(output, False)
        loop.add_reader(output, self._on_readable)
        self._pidfd = os.pidfd_open(pid)
        loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        if self.popen is not None:
            self.popen.wait()
            self._returncode = self.popen.returncode
        else:
            _, status = os.waitpid(self.pid, 0)
            self._returncode = os.waitstatus_to_exitcode(status)
        _spawned.discard(self.pid)
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
        return self._returncode

    async def wait(self) -> int | None:
        """Until it has exited (its output may still be open); its exit code."""
        await asyncio.shield(self.exited)
        return self.returncode


def spawn(
    command: list[str],
    cwd: str | Path,
    env: dict[str, str],
    on_output: Callable[[bytes], None],
) -> Child:
    """Start `command` in a new session (its own process group), stdout and
    stderr merged into `on_output`. Raises OSError if it cannot start. Call
    it from the event loop's thread."""
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    popen: subprocess.Popen[bytes] | None = None
    inside = beside.current() is not None  # the command enters the container, in `cwd` there
    try:
        if inside or _is_current_dir(cwd):
            pid = _posix_spawn(beside.command(command, cwd), env, write_end)
        else:
            popen = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                start_new_session=True,
            )
            pid = popen.pid
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)  # the child has its copy; EOF comes when the last holder exits
    _spawned.add(pid)
    return Child(pid, popen, read_end, on_output, loop)


def _is_current_dir(cwd: str | Path) -> bool:
    """Whether `cwd` is this process's working directory (an agent's is its
    workdir): posix_spawn cannot change it for the child."""
    try:
        # The usual case, cheaply: the very path (a tree run from the tree's
        # parent gives each test that folder, resolved).
        if os.fspath(cwd) == os.getcwd():
            return True
        here, there = os.stat("."), os.stat(cwd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


# Reset in the child as Popen's restore_signals does: Python ignores them.
_DEFAULT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)


def _posix_spawn(command: list[str], env: dict[str, str], output: int) -> int:
    """What Popen(start_new_session=True, stdin=DEVNULL, stdout=stderr=output)
    does, in the working directory of this process, by one vfork-like
    clone and an exec: a third of Popen's cost in a stage's barrier (no
    Python-level argument and environment encoding, no error pipe). Every fd
    this process opens is close-on-exec (PEP 446), so none leaks into it."""
    program = command[0]
    if os.sep not in program:  # looked up in the child's PATH, as Popen does
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        program = found
    return os.posix_spawn(
        program,
        command,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, output, 1),
            (os.POSIX_SPAWN_DUP2, output, 2),
        ],
        setsid=True,
        setsigmask=(),
        setsigdef=_DEFAULT_SIGNALS,
    )
