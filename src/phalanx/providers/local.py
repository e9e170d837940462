"""The `local` provider: every host is a `phalanx agent` process on this
machine, with its own working directory and its host name, reached on
loopback. It is the same agent that connects to a remote coordinator,
forked by a fork server (providers/forkserver.py) that has its imports."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from phalanx.host.process import (
    end_marked,
    group_alive,
    ledger_path,
    read_ledger,
    signal_group,
    stopped,
)
from phalanx.host.workdir import WORKDIR_MARK, socket_dir
from phalanx.layout import agent_log
from phalanx.model import Host
from phalanx.providers.agentenv import AgentUser, agent_argv, own_folder
from phalanx.providers.base import AgentSpec, Capabilities, ProvisionError
from phalanx.providers.forkserver import AgentProcess, Zygote

TOKEN_ENV = "PHALANX_AGENT_TOKEN"
EXIT_GRACE = 5.0  # seconds an agent has to exit after the shutdown message


def host_dir(root: Path, host: str) -> Path:
    return root / host


@dataclass
class _Agent:
    host: str
    process: AgentProcess
    workdir: Path


class LocalProvider:
    listen_address: str | None = None  # loopback

    def __init__(
        self,
        root: Path,
        python: str = sys.executable,
        namespace: Callable[[Host], str] | None = None,
        env: Mapping[str, str] | None = None,
        workroot: Path | None = None,
        user: AgentUser | None = None,
    ) -> None:
        self.root = root
        self.python = python
        # The agents' (and their stages') environment; None: this process's
        # own (`phalanx run`). The service gives a minimal one (agentenv.py).
        self.env = dict(env) if env is not None else None
        # Where the agents work (None: beside their logs, under `root`), and
        # as whom (None: this process's user). The service keeps both away
        # from its data folder (agentenv.py).
        self.workroot = workroot
        self.user = user
        # The network namespace of each host's agent (the netns provider's);
        # the agent also gets mount and UTS namespaces of its own there.
        self.namespace = namespace
        self.agents: list[_Agent] = []
        # Forks the agents: their imports are paid once, not per host.
        self._zygote: Zygote | None = None

    async def open(self) -> None:
        pass

    def capabilities(self) -> Capabilities:
        # One network stack for every host: nothing to break.
        return Capabilities.none("local hosts")

    async def close(self) -> None:
        await self._zygote_down()

    def addresses(self, hosts: list[Host]) -> dict[str, str]:
        return {h.name: "127.0.0.1" for h in hosts}

    def diskmounts(self, host: Host) -> str:
        # Local hosts share this machine's file systems: there is nothing to
        # mount, and a test must not try to.
        return ""

    async def up(self, specs: list[AgentSpec]) -> None:
        try:
            await self._start_agents(specs)
        except OSError as exc:
            # A hosts' folder that cannot be made (a full disk, a file in
            # the way): the run's reason, not a traceback.
            raise ProvisionError(f"cannot start the agents: {exc}") from exc

    async def _start_agents(self, specs: list[AgentSpec]) -> None:
        for spec in specs:
            workdir = host_dir(self.workroot or self.root, spec.host.name)
            if self.workroot is not None:
                own_folder(self.workroot, None)
                own_folder(workdir, self.user)
                if self.user is not None:
                    os.chmod(self.workroot, 0o711)  # its hosts' folders are theirs
            else:
                workdir.mkdir(parents=True, exist_ok=True)
            base = os.environ if self.env is None else self.env
            env = {**base, TOKEN_ENV: spec.token, "PHALANX_HOSTNAME": spec.host.name}
            if self.user is not None:
                env["HOME"] = str(workdir)  # the service's home is not theirs
            log_path = agent_log(host_dir(self.root, spec.host.name))
            log_path.parent.mkdir(parents=True, exist_ok=True)
            argv = agent_argv(spec.url, spec.host.name, workdir)
            with log_path.open("ab") as log_file:
                try:
                    zygote = await self._zygote_up()
                    process = await zygote.spawn(
                        argv,
                        env,
                        log_file.fileno(),
                        title=[self.python, "-m", "phalanx.host", *argv],
                        namespace=self.namespace(spec.host) if self.namespace else None,
                        # As XrdTest's guests had it and Linux does: `hostname`
                        # the short name; `hostname -f` the full one, from
                        # the namespace's /etc/hosts (hosts_file).
                        hostname=spec.host.short_name,
                    )
                except OSError as exc:
                    raise ProvisionError(
                        f"cannot start the agent of {spec.host.name}: {exc}"
                    ) from exc
            self.agents.append(_Agent(spec.host.name, process, workdir))

    async def _zygote_up(self) -> Zygote:
        if self._zygote is not None and not self._zygote.alive:
            await self._zygote_down()
        if self._zygote is None:
            # The agents are forked from it: /proc shows them its environment.
            self._zygote = await Zygote.start(
                self.python,
                env=self.env,
                user=self.user.uid if self.user else None,
                group=self.user.gid if self.user else None,
            )
        return self._zygote

    async def _zygote_down(self) -> None:
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            await zygote.close()

    async def down(self, lost: Collection[str] = ()) -> None:
        """End every agent this provider started. An agent in `lost` (the
        coordinator gave up on it: killed, frozen, cut off) is not waited
        for: it is killed at once."""
        agents, self.agents = self.agents, []
        try:
            await asyncio.gather(*(self._stop(agent, agent.host in lost) for agent in agents))
        finally:
            await self._zygote_down()
            if self.workroot is not None:  # the service's: nothing in it outlives the run
                await asyncio.to_thread(shutil.rmtree, self.workroot, True)

    async def _stop(self, agent: _Agent, lost: bool) -> None:
        if lost or stopped(agent.process.pid):
            # A frozen (SIGSTOPped) agent would not even die of SIGTERM.
            signal_group(agent.process.pid, signal.SIGKILL)
            await agent.process.wait()
            await self._end_strays(agent)
            return
        ended_itself = True
        try:
            await asyncio.wait_for(agent.process.wait(), EXIT_GRACE)
        except TimeoutError:
            ended_itself = False
            signal_group(agent.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(agent.process.wait(), EXIT_GRACE)
            except TimeoutError:
                signal_group(agent.process.pid, signal.SIGKILL)
                await agent.process.wait()
        signal_group(agent.process.pid, signal.SIGKILL)  # anything left in its own group
        # An agent that ended itself with 0 has ended, as its last act, every
        # process carrying its mark: no second scan of /proc (every process's
        # environment read, per host) on the way out of every run.
        await self._end_strays(agent, scan=not (ended_itself and agent.process.returncode == 0))

    async def _end_strays(self, agent: _Agent, scan: bool = True) -> None:
        # An agent killed with -9 could not end its stages' process groups,
        # nor what left them; every stage process carries the agent's
        # workdir in its environment.
        for pgid in read_ledger(ledger_path(agent.workdir)):
            if group_alive(pgid):
                signal_group(pgid, signal.SIGKILL)
        if not scan:
            shutil.rmtree(socket_dir(agent.workdir), ignore_errors=True)
            return
        await end_marked(
            WORKDIR_MARK,
            str(agent.workdir.resolve()),
            grace=0,
            uid=self.user.uid if self.user is not None else None,
        )
        shutil.rmtree(socket_dir(agent.workdir), ignore_errors=True)
