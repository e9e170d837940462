"""The agents' fork server ("zygote"): `python -m phalanx.host.zygote`.

Starting an agent costs mostly its imports (the wire, websockets,
asyncio: ~0.3 s of CPU); a provider bringing up 32 hosts paid that 32
times. The zygote imports them once and forks one agent per request; each
child becomes the agent exactly as `python -m phalanx.host ARGS` would:
its own session, stdin /dev/null, stdout and stderr to its log, the
environment it was sent (the token travels in it, over the socket, never
on a command line), optionally inside a netns host's namespaces, or beside
a running container's processes (host/beside.py).

Its stdin is a SOCK_SEQPACKET socket to the provider (providers/forkserver.py),
one JSON message a packet:

    → {"argv": [...], "env": {...}, "namespace": NS|null, "hostname": H|null,
       "container": {"pid": PID, "python": P, "site": S, "user": [UID, GID]|null}|null,
       "title": [...]}  with the agent log's fd
    ← {"ready": true}                          once imported
    ← {"pid": PID}  with a pidfd of the child  (or {"error": "..."})
    ← {"exit": PID, "code": CODE}              when a child ends (the zygote reaps it)

No event loop and no thread ever exists here: children are forked from a
single-threaded process. At EOF the zygote exits; its children live on
(an orphaned agent gives up without its coordinator)."""

from __future__ import annotations

import contextlib
import importlib.readers  # noqa: F401
import json
import os
import selectors
import signal
import socket
import sys
import threading
import traceback
from typing import Any

# What the agents run, imported once, before any fork; those above and
# these two the agent would import lazily (its shell functions are read
# as resources), each agent again.
import phalanx.host.__main__ as agent_main
import phalanx.host.daemon
import phalanx.host.endpoint
import phalanx.host.scrub  # noqa: F401
from phalanx import loops
from phalanx.host import beside, namespaces
from phalanx.host.runners import RUNNERS
from phalanx.wire.messages import prepare_agent_side

loops.factory()  # imports uvloop here, once for every agent, when PHALANX_LOOP asks for it
RUNNERS.preload()  # phalanx's own runners, found lazily elsewhere
prepare_agent_side()  # else built again in every agent, on its first message

MAX_MESSAGE = 1 << 20


def set_cmdline(words: list[str]) -> None:
    """Show `words` as this process's command line (/proc/PID/cmdline, ps),
    written over the argument area the kernel reads it from; cut to fit.
    The zygote is started with a blank argument making room for it."""
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields 48 and 49 of stat (arg_start, arg_end), counted after "comm".
    start, end = int(fields[45]), int(fields[46])
    text = "\0".join(words).encode()[: end - start - 1]
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(start)
        mem.write(text.ljust(end - start, b"\0"))


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    with contextlib.suppress(OSError):  # the provider is gone: nobody to tell
        socket.send_fds(sock, [json.dumps(message).encode()], fds or [])


def _child(request: dict[str, Any], log_fd: int, closing: list[int]) -> int:
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in closing:
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    with contextlib.suppress(OSError, ValueError, IndexError):  # only cosmetic
        set_cmdline(request["title"])
    container = request.get("container")
    try:
        if request.get("namespace"):
            namespaces.enter(request["namespace"], request["hostname"])
        elif container:
            nsenter = beside.find_nsenter()
            namespaces.join_container(container["pid"])  # returns in a child of this one
            user = container.get("user")
            if user:  # what the agent makes in its folders, the stages' group may change
                os.umask(0o002)
            beside.settle(
                beside.Container(
                    container["python"],
                    container["site"],
                    nsenter,
                    (int(user[0]), int(user[1])) if user else None,
                )
            )
    except OSError as exc:
        print(f"phalanx agent: cannot enter the host's namespaces: {exc}", file=sys.stderr)
        return 2
    os.environ.clear()
    os.environ.update(request["env"])
    return agent_main.main(request["argv"])


def _fork(sock: socket.socket, request: dict[str, Any], fds: list[int], own: list[int]) -> None:
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        _send(sock, {"error": "a request carries exactly one fd: the agent's log"})
        return
    (log_fd,) = fds
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(log_fd)
        _send(sock, {"error": f"fork: {exc}"})
        return
    if pid == 0:
        code = 1
        try:
            code = _child(request, log_fd, [sock.fileno(), *own])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)
    os.close(log_fd)
    # The pidfd is taken before this process can reap the child: it names
    # this child and no later holder of its pid.
    pidfd = os.pidfd_open(pid)
    _send(sock, {"pid": pid}, [pidfd])
    os.close(pidfd)


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(sock: socket.socket) -> None:
    if threading.active_count() != 1:
        raise SystemExit("phalanx zygote: a thread exists after the imports; cannot fork safely")
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    _send(sock, {"ready": True})
    while True:
        for key, _ in selector.select():
            if key.fileobj == wake_r:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                _reap(sock)
                continue
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
            except InterruptedError:
                continue
            if not data:
                return
            _fork(sock, json.loads(data), fds, [wake_r, wake_w, selector.fileno()])
        _reap(sock)


def main() -> int:
    sock = socket.socket(fileno=os.dup(0))
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)  # fd 0 again, harmlessly
    serve(sock)
    return 0


if __name__ == "__main__":
    code = main()
    # Not sys.exit: tearing its modules down costs tens of milliseconds,
    # which the provider waits for at the end of every run.
    sys.stderr.flush()
    os._exit(code)
