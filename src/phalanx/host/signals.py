"""A nemesis's `pause NAME` and `kill NAME` on one host: the processes
named NAME that a case's stages started through this agent, found by the
marks every stage process carries in its environment (the case's scope and
the agent's working directory: on the local provider several agents share
one machine, and a case's scope, but not their working directories)."""

from __future__ import annotations

import contextlib
import os
import signal

from phalanx.host.process import SCOPE_MARK, _marked, marked

SIGNALS = {"STOP": signal.SIGSTOP, "CONT": signal.SIGCONT, "KILL": signal.SIGKILL}


def _names(pid: int) -> tuple[str, ...]:
    """What a process is called: its comm (cut at 15 characters by the
    kernel) and its program's file name."""
    found: list[str] = []
    with contextlib.suppress(OSError), open(f"/proc/{pid}/comm", "rb") as f:
        found.append(f.read().decode(errors="replace").strip())
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
        if argv and argv[0]:
            found.append(os.path.basename(argv[0].decode(errors="replace")))
    return tuple(found)


def named(scope: str, workdir_mark: str, name: str) -> list[int]:
    """The case's processes (on this agent) called `name`."""
    mine = workdir_mark.encode()
    return sorted(
        pid
        for pid in marked(SCOPE_MARK, scope)
        if _marked(pid, mine) and (name in _names(pid) or name[:15] in _names(pid)[:1])
    )


def send(scope: str, workdir_mark: str, name: str, sig: str) -> list[int]:
    """Signal the case's processes called `name`; the pids signalled. A
    process gone meanwhile is left out."""
    done = []
    for pid in named(scope, workdir_mark, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, SIGNALS[sig])
            done.append(pid)
    return done
