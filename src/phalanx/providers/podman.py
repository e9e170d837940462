"""The `podman` provider: every host is a container, with its own root
file system (its image's), on the cluster's bridge as netns hosts are.

The network is the netns provider's, made by it: a namespace per host with
a veth on the bridge, the host's ip, mac and `link:` conditions, its
/etc/hosts, the record that lets a sweep remove what a killed run left, and
the same faults (`NetnsFaults`: the cut rules run in the host's namespace).
The container joins that namespace (`--network ns:…`), so netns hosts, VMs
and containers may share one bridge, and a fault cuts them all alike. With
Docker as the engine (containers.py), which joins no namespace by path, a
container starts without a network and the host's is plumbed into its own
namespace once it runs (`NetnsProvider.attach`); a compose service's own
program waits for it behind a gate (`_gated`).

Each container has the host's full name as its hostname, the namespace's
hosts file as its /etc/hosts, `cpus`/`ram_size` as limits, a volume per
disk at its `mount_point`, and the agent's venv for the image's own Python
(containeragent.py), bind-mounted read-only: phalanx's own commands in the
stages (`phalanx-sync`, …) and Python test children run with it. The agent
itself is forked by this machine's fork server into the running container
(joinedagents.py, host/beside.py): one of its processes, connecting out to
the coordinator on the bridge's address, its token sent over the fork
server's socket; its working folder (the host's folder of the run) is
bind-mounted at the same path. A plain host's container runs a process
that only waits; a compose service's runs the service's own command, and
its published `ports` are forwarded from this machine (portforward.py).
A host with `image: none` is a netns host on the same bridge (this
machine's files and programs; the netns provider's agent), so a cluster
may mix them. Every image is asked for its Python before anything is
made: an image that cannot run the agent stops the run there, named.

Containers and volumes carry the run and its owner (containers.py), so
`phalanx cleanup` and the next run remove a killed run's, as the netns
record does for its network.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Awaitable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from phalanx.layout import agent_log
from phalanx.model import Cluster, Host, Service
from phalanx.providers import containeragent, containers
from phalanx.providers import joinedagents as joined
from phalanx.providers import wheelhouse as wh
from phalanx.providers.base import AgentSpec, Capabilities, NetworkFaults, ProvisionError, Refused
from phalanx.providers.containers import Engine, EngineError
from phalanx.providers.netns import (
    ETC_NETNS,
    STATE_DIR,
    NetnsProvider,
    label,
    missing_privileges,
)
from phalanx.providers.portforward import ForwardError, Forwards

A = TypeVar("A")
B = TypeVar("B")
NO_IMAGE = "none"  # a host's `image: none`: a netns host among the containers
EXPLAIN_LINES = 12  # of an agent's log, when it never connected
HEALTH_TIMEOUT = 120.0  # seconds for a compose service's healthcheck to pass


@dataclass(frozen=True)
class Container:
    host: str
    name: str  # the engine's name for it
    volumes: tuple[str, ...]


def container_name(run_id: str, index: int) -> str:
    return f"phx-{label(run_id)}-{index}"


def memory(ram_size: str) -> str:
    """A host's `ram_size` (XrdTest: `512M`, `1G`, `1024`, in MiB when bare)
    as the engine's --memory."""
    text = ram_size.strip().upper().removesuffix("B").removesuffix("I")
    if text.isdigit():
        return f"{text}m"
    if text[:-1].isdigit() and text[-1] in "KMG":
        return f"{text[:-1]}{text[-1].lower()}"
    raise ProvisionError(f"ram_size {ram_size!r} is not a size (512M, 2G)")


# A plain host's container: its first process only waits, and reaps what
# is re-parented to it (the agent reaps its stages' own), with the image's
# Python, which the agent needs anyway.
WAIT = "import signal\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)\nwhile 1: signal.pause()"


# A compose service's gate (`_gated`): its program once `READY` is there.
READY = ".phalanx/network.ready"
GATE = f"""import os, sys, time
end = time.monotonic() + {HEALTH_TIMEOUT}
while not os.path.exists(sys.argv[1]):
    if time.monotonic() > end:
        sys.exit("phalanx: this container's network was never plumbed")
    time.sleep(0.005)
os.execvp(sys.argv[2], sys.argv[2:])"""


def site_packages(version: tuple[int, int]) -> str:
    """Where phalanx is in the agent's venv, as the container sees it."""
    return f"{containeragent.AGENT_MOUNT}/lib/python{version[0]}.{version[1]}/site-packages"


class PodmanProvider:
    def __init__(
        self,
        cluster: Cluster,
        root: Path,
        run_id: str,
        state_dir: Path = STATE_DIR,
        engine: Engine | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env`: the fork server's environment (None: this process's; the
        service gives a minimal one, agentenv.py). A container host's agent
        and stages have their container's; `image: none` hosts have `env`."""
        self.cluster = cluster
        self.root = root
        self.run_id = run_id
        self.network = NetnsProvider(cluster, root, run_id, sys.executable, state_dir, env)
        self.engine = engine
        self.owner = containers.owner_mark()
        self.containers: dict[str, Container] = {}
        self.venvs: dict[str, Path] = {}  # image → the agent's venv for it
        self.sites: dict[str, str] = {}  # image → where phalanx is inside its containers
        self.forwards = Forwards()  # compose services' published ports
        self.agents = joined.JoinedAgents(env)

    # Both are the network's, known once it is made (`open`).
    listen_address: str | None = None
    faults: NetworkFaults | None = None

    def in_namespace(self, host: Host) -> bool:
        """A netns host among the containers (`image: none`): an agent of
        this machine in the host's namespace on the same bridge."""
        return (host.image or self.cluster.image) == NO_IMAGE

    def image(self, host: Host) -> str:
        image = host.image or self.cluster.image
        if image is None:
            raise ProvisionError(
                f"host {host.name} has no image: give it `image:`, or the cluster one "
                "(phalanx image build --container makes a Debian one)"
            )
        return image

    def capabilities(self) -> Capabilities:
        # Faults as on netns hosts: the containers share their hosts' namespaces.
        faults = self.faults or Refused("the hosts' network is made when the provider opens")
        return replace(Capabilities.none("container hosts"), faults=faults)

    async def open(self) -> None:
        problem = missing_privileges()
        if problem is not None:
            raise ProvisionError(problem.replace("the netns provider", "the podman provider"))
        if shutil.which("nsenter") is None:
            raise ProvisionError("the podman provider needs nsenter (util-linux) on PATH")
        if any(not self.in_namespace(h) for h in self.cluster.hosts):
            self.agents.prepare()  # the agents' fork server imports meanwhile
        try:
            self.engine = self.engine or containers.engine()
            if not self.engine.joins_by_path:
                self.network.attached_later = {
                    h.name for h in self.cluster.hosts if not self.in_namespace(h)
                }
            images = {self.image(h) for h in self.cluster.hosts if not self.in_namespace(h)}
            await self._build_services()
            # The images are judged, dead runs swept and the network made at
            # once (each is a few engine or `ip` calls): a refused image ends
            # the run before any container starts, and `close` removes the
            # network made meanwhile.
            judged, _ = await _all(
                asyncio.gather(*(containeragent.probe(self.engine, i) for i in sorted(images))),
                asyncio.gather(containers.sweep(self.engine), self.network.open()),
            )
            for image, python in zip(sorted(images), judged, strict=True):
                venv = await asyncio.to_thread(containeragent.agent_venv, python.python)
                await containeragent.compile_in(self.engine, image, venv)
                self.venvs[image] = venv
                self.sites[image] = site_packages(python.python.version)
        except (EngineError, containeragent.ImageRefused, wh.WheelhouseError, OSError) as exc:
            raise ProvisionError(str(exc)) from exc
        except TimeoutError:
            raise ProvisionError("the container engine did not answer in time") from None
        self.listen_address = self.network.listen_address
        self.faults = self.network.faults

    async def _build_services(self) -> None:
        """A compose service's `build:` as its image, by the engine."""
        assert self.engine is not None
        for host in self.cluster.hosts:
            service = host.service
            if service is None or service.build is None:
                continue
            file = ["--file", service.dockerfile] if service.dockerfile else []
            # The engine's OCI runtime and ulimits hold for its RUN steps too.
            await self.engine.call("build", *self.engine.build_options(), "--tag", self.image(host),
                                   *file, service.build, timeout=1800.0)  # fmt: skip

    def addresses(self, hosts: list[Host]) -> dict[str, str]:
        return self.network.addresses(hosts)

    def diskmounts(self, host: Host) -> str:
        # Each disk is a volume, mounted at its mount point when the container starts.
        return ""

    async def up(self, specs: list[AgentSpec]) -> None:
        unknown = [s.host.name for s in specs if s.host.name not in self.network.hosts]
        if unknown:
            raise ProvisionError(f"no network was made for {', '.join(unknown)}")
        index = {h.name: i for i, h in enumerate(self.cluster.hosts)}
        plain = [s for s in specs if self.in_namespace(s.host)]
        if plain:
            await self.network.up(plain)
        specs = [s for s in specs if not self.in_namespace(s.host)]
        started = await asyncio.gather(
            *(self._start(spec, index[spec.host.name]) for spec in specs), return_exceptions=True
        )
        failed = [
            f"{s.host.name}: {e or type(e).__name__}"
            for s, e in zip(specs, started, strict=True)
            if isinstance(e, BaseException)
        ]
        if failed:
            raise ProvisionError(f"cannot start container hosts: {'; '.join(failed)}")
        try:
            for spec in specs:
                for port in spec.host.service.ports if spec.host.service else ():
                    address = self.network.hosts[spec.host.name].ip
                    await self.forwards.add(port.host_ip, port.published, address, port.target)
        except ForwardError as exc:
            raise ProvisionError(f"{spec.host.name}: {exc}") from None
        await self._healthy([s.host for s in specs])

    async def _start(self, spec: AgentSpec, index: int) -> None:
        assert self.engine is not None
        host = spec.host
        name = container_name(self.run_id, index)
        # The engine takes bind mounts by absolute path only.
        folder, sockets = joined.workdir_of(self.root / host.name)
        pidfile = folder / ".phalanx" / "container.pid"
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
        marks = containers.labels(self.run_id, self.owner)
        volumes = []
        for disk in host.disks:
            volume = f"{name}-{disk.name}"
            await self.engine.call("volume", "create", *marks, volume)
            volumes.append(volume)
        # Recorded before it starts: down and close remove what is half made.
        self.containers[host.name] = Container(host.name, name, tuple(volumes))
        namespace = self.network.hosts[host.name].namespace
        image = self.image(host)
        python = f"{containeragent.AGENT_MOUNT}/bin/python"
        # The hosts file mounted over /etc/hosts: both engines then leave it be.
        options = [
            "--detach", "--name", name, *marks, *self.engine.run_options(),
            *self.engine.network_option(namespace), *self.engine.pidfile_option(pidfile),
            "--hostname", host.name,
            "--volume", f"{ETC_NETNS / namespace / 'hosts'}:/etc/hosts:ro",
            "--volume", f"{self.venvs[image]}:{containeragent.AGENT_MOUNT}:ro",
            "--volume", f"{folder}:{folder}",
            "--volume", f"{sockets}:{sockets}",
            "--env", f"PHALANX_HOSTNAME={host.name}",
        ]  # fmt: skip
        for disk, volume in zip(host.disks, volumes, strict=True):
            options += ["--volume", f"{volume}:{disk.mount_point}"]
        if host.vcpus:
            options += ["--cpus", str(host.vcpus)]
        if host.ram_size:
            options += ["--memory", memory(host.ram_size)]
        options += _service_options(host)
        service = host.service
        if service is None:
            argv = ["--entrypoint", python, image, "-I", "-S", "-c", WAIT]
        else:
            # Docker's --entrypoint is one word: the rest goes before the command.
            entry = list(service.entrypoint or ())
            own = ["--entrypoint", entry[0]] if entry else []
            argv = [*own, image, *entry[1:], *(service.command or ())]
        late = host.name in self.network.attached_later
        if late and service is not None:
            (folder / READY).unlink(missing_ok=True)
            argv = await self._gated(host.name, image, service, folder / READY)
        await self.engine.call("run", *options, *argv)
        pid = await self._first_process(name, pidfile)
        await joined.handed_over(pid)
        if late:
            await self.network.attach(host.name, pid)
        user = joined.container_user(pid)
        if user is not None:
            # The agent is root; its folders are the stages' group's too (set-group-id:
            # what it makes in them is), so the stages write where they work.
            for path, mode in ((folder, 0o2775), (folder / ".phalanx", 0o2775), (sockets, 0o2770)):
                os.chown(path, 0, user[1])
                os.chmod(path, mode)
        if late and service is not None:
            (folder / READY).touch()  # the service's own program starts now
        inside = joined.Inside(
            pid, python, self.sites[image], await joined.container_env(pid), user
        )
        await self.agents.start(spec, folder, inside)

    async def _gated(self, host: str, image: str, service: Service, ready: Path) -> list[str]:
        """A compose service's `run` arguments for an engine that plumbs its
        network after it starts (Docker): its program (its entrypoint and
        command, else the image's) is run by a gate, in the image's Python,
        that waits for `ready`, so the program starts on its network."""
        assert self.engine is not None
        program = list(service.entrypoint or ())
        if not program:
            _, out, _ = await self.engine.call(
                "image", "inspect", "--format", "{{json .Config.Entrypoint}}", image
            )
            program = [str(word) for word in json.loads(out.strip() or "null") or ()]
        if service.command is not None:
            program += service.command
        elif not service.entrypoint:
            _, out, _ = await self.engine.call(
                "image", "inspect", "--format", "{{json .Config.Cmd}}", image
            )
            program += [str(word) for word in json.loads(out.strip() or "null") or ()]
        if not program:
            raise ProvisionError(f"service {host}: its image {image} has no command")
        python = f"{containeragent.AGENT_MOUNT}/bin/python"
        return ["--entrypoint", python, image, "-I", "-S", "-c", GATE, str(ready), *program]

    async def _first_process(self, name: str, pidfile: Path) -> int:
        """The container's first process, as this machine numbers it."""
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError):
            assert self.engine is not None
            _, out, _ = await self.engine.call("inspect", "--format", "{{.State.Pid}}", name)
            if not out.strip().isdigit() or int(out) == 0:
                raise ProvisionError(f"container {name} is not running") from None
            return int(out)

    async def _healthy(self, hosts: list[Host]) -> None:
        """Until every service another one waits for (`condition:
        service_healthy`) passes its healthcheck."""
        wanted = {n for h in hosts if h.service for n in h.service.healthy_before}
        checks = [h for h in hosts if h.service and h.service.healthcheck and h.name in wanted]
        await asyncio.gather(*(self._wait_healthy(h) for h in checks))

    async def _wait_healthy(self, host: Host) -> None:
        assert self.engine is not None and host.service and host.service.healthcheck
        check = host.service.healthcheck
        name = self.containers[host.name].name
        deadline = asyncio.get_running_loop().time() + HEALTH_TIMEOUT
        said = ""
        for _ in range(max(check.retries, 1)):
            try:
                code, out, err = await self.engine.call(
                    "exec", name, *check.test, timeout=check.timeout, check=False
                )
            except TimeoutError:
                code, out, err = 124, "", "timed out"
            if code == 0:
                return
            said = (err.strip() or out.strip() or f"exit code {code}").splitlines()[-1]
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(check.interval)
        raise ProvisionError(f"service {host.name} never became healthy: {said}")

    def connected(self, host: str) -> None:
        pass

    def explain(self, host: str) -> str | None:
        """Why an agent never connected: the last lines of its log (the
        agent's own output, or its Python's traceback)."""
        if host not in self.containers:
            return None
        try:
            lines = agent_log(self.root / host).read_text(errors="replace").splitlines()
        except OSError:
            return None
        if not lines:
            return None
        return f"{host}'s agent said:\n" + "\n".join(lines[-EXPLAIN_LINES:])

    async def down(self, lost: Collection[str] = ()) -> None:
        """Every container and its volumes, at once: the results are in
        (the coordinator acked them), and each agent and what its stages
        left go with its container (the agent is in its process namespace),
        so there is nothing for an agent to end gracefully."""
        await self.forwards.close()
        await self.network.down(lost)  # the netns hosts' agents, when there are
        made, self.containers = self.containers, {}
        try:
            if made and self.engine is not None:
                await containers.remove(
                    self.engine,
                    [c.name for c in made.values()],
                    [v for c in made.values() for v in c.volumes],
                )
        finally:
            await self.agents.ended()
            for container in made.values():
                _, sockets = joined.workdir_of(self.root / container.host)
                shutil.rmtree(sockets, ignore_errors=True)

    async def close(self) -> None:
        # Cancelled meanwhile (a service shutting down): the teardown goes on.
        await asyncio.shield(self._teardown())

    async def _teardown(self) -> None:
        self.listen_address = None
        self.faults = None
        try:
            await self.down(())
        finally:
            await self.agents.close()
            await self.network.close()


async def _all(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both, run at once and both awaited to their end, whatever either
    does; then the first's error, else the second's."""
    done = await asyncio.gather(first, second, return_exceptions=True)
    for result in done:
        if isinstance(result, BaseException):
            raise result
    return done[0], done[1]  # type: ignore[return-value]


def _service_options(host: Host) -> list[str]:
    service = host.service
    if service is None:
        return []
    options = []
    for key, value in sorted(service.environment.items()):
        options += ["--env", f"{key}={value}"]
    for volume in service.volumes:
        options += ["--volume", volume]
    if service.working_dir:
        options += ["--workdir", service.working_dir]
    if service.user:
        options += ["--user", service.user]
    return options
