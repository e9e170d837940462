"""Container hosts' agents, forked by this machine's fork server (the
agents' zygote, providers/forkserver.py) into their running containers
(host/beside.py): a container host costs the engine's `run` and a fork,
not a Python of its own importing the agent's libraries.

Each agent ends with its container (it is one of the container's
processes); what the fork server's child left outside the container to
wait for it ends then too, and is awaited here, within a bound."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from phalanx.host.workdir import socket_dir
from phalanx.layout import agent_log
from phalanx.providers.agentenv import agent_argv
from phalanx.providers.base import AgentSpec, ProvisionError
from phalanx.providers.forkserver import AgentProcess, Zygote

TOKEN_ENV = "PHALANX_AGENT_TOKEN"
END_WAIT = 10.0  # seconds for an agent to end once its container is removed
HANDOVER_WAIT = 30.0  # seconds for a container's runtime to start its program


@dataclass(frozen=True)
class Inside:
    """What a container's agent needs to know of it."""

    pid: int  # its first process, as this machine numbers it
    python: str  # the Python phalanx runs from inside it
    site: str  # where phalanx is importable inside it
    env: Mapping[str, str]  # its environment (the image's and the engine's options)
    user: tuple[int, int] | None  # the uid and gid its processes run as, when not root


async def handed_over(pid: int, within: float = HANDOVER_WAIT) -> None:
    """Until the container's first process runs the container's program:
    the engine's runtime returns while its own code may still be in that
    process (its environment and user not yet the container's). It has
    when the process's program is a file of the container's own root."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not _runs_own_program(pid):
        if loop.time() > deadline:
            raise ProvisionError(f"the container's process {pid} never started its program")
        await asyncio.sleep(0.005)


def _runs_own_program(pid: int) -> bool:
    try:
        program = os.readlink(f"/proc/{pid}/exe")
        running = os.stat(f"/proc/{pid}/exe")
        inside = os.stat(f"/proc/{pid}/root{program}")
    except OSError:
        return False
    return (running.st_dev, running.st_ino) == (inside.st_dev, inside.st_ino)


async def container_env(pid: int, within: float = 2.0) -> dict[str, str]:
    """The environment the container's first process started with: the
    image's, the engine's and the run's options' (its stages' too). The
    engine always gives it a PATH; once, on a loaded machine, it was read
    without one (the stages then had Python's default PATH, /bin first),
    so it is read again until it has one, for at most `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    env = _environ(pid)
    while "PATH" not in env and loop.time() < deadline:
        await asyncio.sleep(0.005)
        env = _environ(pid)
    return env


def _environ(pid: int) -> dict[str, str]:
    data = Path(f"/proc/{pid}/environ").read_bytes()
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.decode(errors="surrogateescape").partition("=")
        if sep and key:
            env[key] = value
    return env


def container_user(pid: int) -> tuple[int, int] | None:
    """The uid and gid of the container's first process; None for root."""
    ids: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid"):
            ids[key] = int(value.split()[0])
    uid, gid = ids.get("Uid", 0), ids.get("Gid", 0)
    return None if uid == 0 else (uid, gid)


def workdir_of(folder: Path) -> tuple[Path, Path]:
    """A host's working folder on this machine and its local socket's
    folder: both are bind-mounted into its container at the same paths."""
    folder = folder.resolve()
    return folder, socket_dir(folder)


class JoinedAgents:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        """`env`: the fork server's own (None: this process's); each agent
        gets its container's. What the agents' /proc shows of the fork
        server's environment block is this."""
        self.env = env
        self.agents: dict[str, AgentProcess] = {}
        self._zygote: Zygote | None = None
        self._starting: asyncio.Future[Zygote] | None = None

    def prepare(self) -> None:
        """Start the fork server now, while the containers start: its
        imports and the engine's work overlap."""
        if self._zygote is None and self._starting is None:
            self._starting = asyncio.ensure_future(Zygote.start(sys.executable, self.env))

    async def _fork_server(self) -> Zygote:
        if self._zygote is not None and not self._zygote.alive:
            await self._zygote.close()
            self._zygote = None
        if self._zygote is None:
            self.prepare()
            starting = self._starting
            assert starting is not None
            try:
                self._zygote = await asyncio.shield(starting)
            finally:
                if self._starting is starting:
                    self._starting = None
        return self._zygote

    async def start(self, spec: AgentSpec, folder: Path, inside: Inside) -> None:
        """Fork `spec`'s agent into the container `inside` describes, its
        log in `folder` (its working folder)."""
        workdir, _ = workdir_of(folder)
        env = {**inside.env, TOKEN_ENV: spec.token, "PHALANX_HOSTNAME": spec.host.name}
        argv = agent_argv(spec.url, spec.host.name, workdir)
        container = {
            "pid": inside.pid,
            "python": inside.python,
            "site": inside.site,
            "user": list(inside.user) if inside.user else None,
        }
        with agent_log(folder).open("ab") as log_file:
            try:
                zygote = await self._fork_server()
                process = await zygote.spawn(
                    argv,
                    env,
                    log_file.fileno(),
                    title=[inside.python, "-m", "phalanx.host", *argv],
                    container=container,
                )
            except OSError as exc:
                raise ProvisionError(f"cannot start the agent of {spec.host.name}: {exc}") from exc
        self.agents[spec.host.name] = process

    async def ended(self) -> None:
        """Until every agent has ended (their containers are gone), then the
        fork server. One that outlives the bound is killed with its group."""
        agents, self.agents = self.agents, {}

        async def end(process: AgentProcess) -> None:
            try:
                await asyncio.wait_for(process.wait(), END_WAIT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), END_WAIT)

        try:
            await asyncio.gather(*(end(p) for p in agents.values()))
        finally:
            await self.close()

    async def close(self) -> None:
        starting, self._starting = self._starting, None
        if starting is not None:
            with contextlib.suppress(Exception):
                self._zygote = self._zygote or await starting
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            await zygote.close()
