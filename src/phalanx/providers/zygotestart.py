"""Starting the agents' fork server (host/zygote.py), in a module light
enough for `phalanx run` to import first thing.

Its imports are most of an agent's start, so a command that knows early it
will bring local agents up may `prestart` the zygote before its own
imports: both import at once (this machine has two cores), and the
provider's `Zygote.start` (providers/forkserver.py) adopts it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EXIT_TIMEOUT = 5.0  # seconds the zygote has to exit at EOF
# A blank argument of the zygote's: the room its children write their own
# command line into (see zygote.set_cmdline).
ROOM = " " * 2048


def _identity(user: int | None, group: int | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"user": user, "group": group, "extra_groups": []}


@dataclass
class Launched:
    """A zygote process started, not yet served by an event loop."""

    popen: subprocess.Popen[bytes]
    sock: socket.socket  # ours: requests out, replies in
    stderr: int  # the read end of its stderr

    def discard(self) -> None:
        """End it (it forked nothing yet: its group is itself)."""
        self.sock.close()
        os.close(self.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(EXIT_TIMEOUT)


def launch(
    python: str,
    env: Mapping[str, str] | None = None,
    user: int | None = None,
    group: int | None = None,
) -> Launched:
    """Start the fork server, with `env` (None: this process's) as `user`
    and `group` (None: this process's): its agents are theirs too. It
    imports on its own; nothing here waits for it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        popen = subprocess.Popen(
            [python, "-m", "phalanx.host.zygote", ROOM],
            stdin=theirs.fileno(),
            stdout=subprocess.DEVNULL,
            stderr=write_end,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            **_identity(user, group),
        )
    except BaseException:
        ours.close()
        os.close(read_end)
        raise
    finally:
        theirs.close()
        os.close(write_end)
    ours.setblocking(False)
    return Launched(popen, ours, read_end)


_Key = tuple[str, frozenset[tuple[str, str]] | None, int | None, int | None]
_prestarted: dict[_Key, Launched] = {}


def _key(python: str, env: Mapping[str, str] | None, user: int | None, group: int | None) -> _Key:
    return (python, frozenset(env.items()) if env is not None else None, user, group)


def prestart(python: str) -> int:
    """Start now the fork server that `Zygote.start(python)` (this process's
    user and environment) will want, so that it imports while the caller
    does; its pid. One not adopted is ended by `discard_prestarted`."""
    key = _key(python, None, None, None)
    if key not in _prestarted:
        _prestarted[key] = launch(python)
    return _prestarted[key].popen.pid


def discard_prestarted() -> None:
    """End the prestarted fork servers no provider adopted."""
    while _prestarted:
        _, launched = _prestarted.popitem()
        launched.discard()


def adopt(
    python: str, env: Mapping[str, str] | None, user: int | None, group: int | None
) -> Launched | None:
    """The prestarted fork server of these, alive, taken; else None."""
    launched = _prestarted.pop(_key(python, env, user, group), None)
    if launched is not None and launched.popen.poll() is not None:
        launched.discard()  # it died waiting: start another
        return None
    return launched
