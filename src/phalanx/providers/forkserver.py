"""The provider's side of the agents' fork server (host/zygote.py): start
it, ask it for agents, and follow each agent through a pidfd, so that its
end is noticed even if the zygote itself is gone.

The zygote is started by providers/zygotestart.py (maybe early, by
`phalanx run`); `Zygote.start` adopts a prestarted one."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from phalanx.host.process import Child
from phalanx.providers.zygotestart import EXIT_TIMEOUT, Launched, adopt, launch

READY_TIMEOUT = 60.0  # seconds for the zygote's imports, on a loaded machine
REPLY_TIMEOUT = 30.0
REPORT_WAIT = 1.0  # seconds an exit status may trail the exit itself
MAX_MESSAGE = 1 << 16
MAX_ERRORS = 1 << 14  # the tail of its stderr kept, to say why it failed


class ZygoteError(OSError):
    pass


class AgentProcess:
    """An agent forked by the zygote: its pid (its process group's too),
    and its end."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = pidfd
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._ended: asyncio.Future[None] = loop.create_future()
        self._reported = asyncio.Event()
        loop.add_reader(pidfd, self._on_end)

    def _on_end(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        if not self._ended.done():
            self._ended.set_result(None)

    def report(self, code: int | None) -> None:
        if code is not None:
            self.returncode = code
        self._reported.set()

    async def wait(self) -> int | None:
        """Until it has ended; its exit code when the zygote reported it
        (None when the zygote was gone first)."""
        await asyncio.shield(self._ended)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reported.wait(), REPORT_WAIT)
        return self.returncode


class Zygote:
    def __init__(self, launched: Launched) -> None:
        self._loop = asyncio.get_running_loop()
        self._errors = bytearray()
        self.process = Child(
            launched.popen.pid, launched.popen, launched.stderr, self._on_stderr, self._loop
        )
        sock = launched.sock
        self._sock = sock
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._replies: collections.deque[asyncio.Future[AgentProcess]] = collections.deque()
        self._children: dict[int, AgentProcess] = {}
        self.alive = True
        self._loop.add_reader(sock, self._readable)
        self.process.exited.add_done_callback(self._exited)

    def _exited(self, _: object) -> None:
        # Seen at once, not at the socket's EOF later in the loop: a new
        # `up` right after must start another.
        if self.alive:
            self._readable()  # what it said before it ended
            self._gone()

    @classmethod
    async def start(
        cls,
        python: str,
        env: Mapping[str, str] | None = None,
        user: int | None = None,
        group: int | None = None,
    ) -> Zygote:
        """The fork server, with `env` (None: this process's) as `user` and
        `group` (None: this process's), ready: a prestarted one, else a new one."""
        launched = adopt(python, env, user, group) or launch(python, env, user, group)
        zygote = cls(launched)
        try:
            await asyncio.wait_for(asyncio.shield(zygote._ready), READY_TIMEOUT)
        except (TimeoutError, ZygoteError) as exc:
            why = await zygote._stderr() or str(exc) or "no answer"
            await zygote.close()
            raise ZygoteError(f"the agents' fork server did not start: {why}") from None
        return zygote

    def _on_stderr(self, data: bytes) -> None:
        self._errors += data
        del self._errors[:-MAX_ERRORS]

    async def _stderr(self) -> str:
        """The last line it wrote on stderr (its traceback's), once it has
        closed it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.process.output_closed), 2)
        lines = self._errors.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def _readable(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._sock, MAX_MESSAGE, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._gone()
                return
            self._handle(json.loads(data), fds)

    def _handle(self, message: dict[str, Any], fds: list[int]) -> None:
        if "ready" in message:
            if not self._ready.done():
                self._ready.set_result(None)
        elif "exit" in message:
            child = self._children.pop(message["exit"], None)
            if child is not None:
                child.report(message["code"])
        elif self._replies:
            reply = self._replies.popleft()
            if "pid" in message and len(fds) == 1:
                child = AgentProcess(message["pid"], fds[0])
                self._children[child.pid] = child
                if not reply.done():
                    reply.set_result(child)
            else:
                for fd in fds:
                    os.close(fd)
                if not reply.done():
                    reply.set_exception(ZygoteError(message.get("error", "a bad answer")))
        else:
            for fd in fds:
                os.close(fd)

    def _gone(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self._loop.remove_reader(self._sock)
        error = ZygoteError("the agents' fork server has ended")
        if not self._ready.done():
            self._ready.set_exception(error)
        while self._replies:
            reply = self._replies.popleft()
            if not reply.done():
                reply.set_exception(error)
        # Their pidfds still tell their ends; nobody will report a status.
        for child in self._children.values():
            child.report(None)
        self._children.clear()

    async def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_fd: int,
        title: Sequence[str],
        namespace: str | None = None,
        hostname: str | None = None,
        container: Mapping[str, object] | None = None,
    ) -> AgentProcess:
        """Fork an agent running `python -m phalanx.host ARGV` in its own
        session, its output to `log_fd`, optionally in a netns host's
        namespaces under `hostname`, or beside a running container's
        processes (`container`: its first process's `pid`, the `python` and
        `site` phalanx runs from inside it, the stages' `user`: see
        host/beside.py); shown as `title` in ps."""
        if not self.alive:
            raise ZygoteError("the agents' fork server has ended")
        request = {
            "argv": list(argv),
            "env": dict(env),
            "namespace": namespace,
            "hostname": hostname,
            "container": dict(container) if container is not None else None,
            "title": list(title),
        }
        reply: asyncio.Future[AgentProcess] = self._loop.create_future()
        self._replies.append(reply)
        data = json.dumps(request).encode()
        deadline = self._loop.time() + REPLY_TIMEOUT
        while True:
            try:
                socket.send_fds(self._sock, [data], [log_fd])
                break
            except BlockingIOError:
                if self._loop.time() > deadline:
                    raise ZygoteError("the agents' fork server takes no request") from None
                await asyncio.sleep(0.01)
            except OSError as exc:
                self._replies.remove(reply)
                raise ZygoteError(f"the agents' fork server is gone: {exc}") from exc
        try:
            return await asyncio.wait_for(asyncio.shield(reply), REPLY_TIMEOUT)
        except TimeoutError:
            raise ZygoteError("the agents' fork server did not answer") from None

    async def close(self) -> None:
        """End the zygote (EOF); its children live on."""
        if self.alive:
            self._gone()
        with contextlib.suppress(OSError):
            self._sock.close()
        try:
            await asyncio.wait_for(self.process.wait(), EXIT_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
