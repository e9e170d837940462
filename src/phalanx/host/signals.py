"""A nemesis's `pause NAME` and `kill NAME` on one host: the processes
named NAME that a case's stages started through this agent, found by the
marks every stage process carries in its environment (the case's scope and
the agent's working directory: on the local provider several agents share
one machine, and a case's scope, but not their working directories)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from phalanx.host.process import SCOPE_MARK, _marked, _state, marked

REAP_WAIT = 2.0  # seconds for a killed process to become a zombie, to reap it

SIGNALS = {"STOP": signal.SIGSTOP, "CONT": signal.SIGCONT, "KILL": signal.SIGKILL}


COMM_MAX = 15  # the kernel cuts a process's command name to this many characters


def called(pid: int, name: str) -> bool:
    """Whether the process is called `name`: its command name (as the kernel
    cut it) or its program's file name."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/comm", "rb") as f:
        if f.read().decode(errors="replace").strip() == name[:COMM_MAX]:
            return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
        program = f.read().split(b"\0")[0]
        return os.path.basename(program.decode(errors="replace")) == name
    return False


def named(scope: str, workdir_mark: str, name: str) -> list[int]:
    """The case's processes (on this agent) called `name`."""
    mine = workdir_mark.encode()
    return sorted(
        pid for pid in marked(SCOPE_MARK, scope) if _marked(pid, mine) and called(pid, name)
    )


def send(scope: str, workdir_mark: str, name: str, sig: str) -> list[int]:
    """Signal the case's processes called `name`; the pids signalled. A
    process gone meanwhile is left out. Blocks up to REAP_WAIT after a KILL:
    run it in a thread."""
    done = []
    for pid in named(scope, workdir_mark, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, SIGNALS[sig])
            done.append(pid)
    if sig == "KILL":
        _reap(done)
    return done


def _reap(pids: list[int]) -> None:
    """A killed orphan of a stage is this agent's child (its subreaper):
    reaped here, it is gone for the test that looks for it, not a zombie
    until the case ends."""
    deadline = time.monotonic() + REAP_WAIT
    left = set(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            if _state(pid) in (None, "Z", "X"):
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                left.discard(pid)
        if left:
            time.sleep(0.01)
