"""The `ssh` provider: each host is a machine phalanx logs in to with SSH
(asyncssh), where it installs and starts the agent.

For each host, in parallel:

1. Log in (the host's `ssh:` mapping: user, port, address, key_file,
   known_hosts). The host key is always checked against the known_hosts
   file; an unknown or changed key is refused, never accepted.
2. Find a CPython >= 3.11 on the remote (python3.N, python3).
3. Install the agent into `~/.cache/phalanx/<version>/venv` from the
   wheelhouse built here (`providers.wheelhouse`): the wheels go over SFTP,
   the venv is made without pip, and pip (run from its own wheel) installs
   with `--no-index`: the remote needs no package index. A marker file
   holds the wheelhouse's key; an agent installed from the same wheelhouse
   is not copied nor installed again.

Any host failing any of these stops the run before its first stage, with
one error naming every failed host (a suite's hosts depend on each other:
a run on some of them would fail later and less clearly).

Then each agent is started in a session of its own, in a fresh working
directory under the remote's temp dir; its token goes to it on stdin,
never on a command line. It reaches the coordinator through an SSH reverse
port forward (`ws://127.0.0.1:<port>/agent` on the remote), so the
coordinator opens no port to the network. The forward listens on the
coordinator's own port when the remote has it free, so that stages reach
the coordinator at `@coordinator@:@port@` as on a local host (suite files:
coordinator/scripts.py, whose client the host's agent names). Its output is the host's
`agent.log` in the run folder. `down` waits for the agent to exit after
the coordinator's shutdown, then ends whatever is left of it and of its
stages on the remote, removes its working directory and logs out: the
remote keeps only the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncssh
from asyncssh.forward import SSHForwarder

from phalanx.layout import agent_log
from phalanx.model import Host, SshAccess
from phalanx.providers import forwarded
from phalanx.providers import wheelhouse as wh
from phalanx.providers.base import AgentSpec, Capabilities, ProvisionError
from phalanx.providers.forwarded import Forwarded
from phalanx.providers.pythons import FIND_PYTHONS as _FIND_PYTHONS
from phalanx.providers.pythons import RemotePython, choose_python

CONNECT_TIMEOUT = 20.0  # seconds to reach a host and log in
COMMAND_TIMEOUT = 300.0  # seconds for a remote command (the install)
START_TIMEOUT = 30.0  # seconds for a remote agent to say it started
EXIT_GRACE = 5.0  # seconds an agent has to exit after the shutdown message
GIVE_UP_AFTER = 30.0  # an agent cut off from its coordinator stops looking for it
READ_SIZE = 64 * 1024
INSTALLED = "installed"  # the marker file: the wheelhouse key of the installed agent


def cache_dir() -> str:
    """The agent's install folder on a remote, relative to its home."""
    return f".cache/phalanx/{wh.version()}"


def host_dir(root: Path, host: str) -> Path:
    return root / host


def ssh_address(host: Host) -> str:
    access = host.ssh or SshAccess()
    return access.address or host.ip or host.name


def _local_path(text: str) -> str:
    return str(Path(os.path.expanduser(text)).resolve())


class _Tracked(SSHForwarder):
    """This process's end of a connection through a host's reverse forward,
    registered while open (providers/forwarded.py)."""

    def __init__(self, on_host: Forwarded) -> None:
        super().__init__()
        self.on_host = on_host
        self.ends: tuple[int, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        local, peer = transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        if local is not None and peer is not None:
            self.ends = (local[1], peer[1])
            forwarded.opened(*self.ends, self.on_host)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ends is not None:
            forwarded.closed(*self.ends)
        super().connection_lost(exc)


@dataclass
class _Remote:
    host: Host
    conn: asyncssh.SSHClientConnection
    python: RemotePython
    installed: bool = False  # this bring-up copied and installed the agent
    listener: asyncssh.SSHListener | None = None
    process: asyncssh.SSHClientProcess[bytes] | None = None
    pid: int | None = None
    workdir: str | None = None
    pump: asyncio.Task[None] | None = None


@dataclass
class _Failures:
    by_host: dict[str, str] = field(default_factory=dict)

    def gathered(self, specs: list[AgentSpec], outcomes: list[Any]) -> None:
        """Note every host's ProvisionError from a `gather(...,
        return_exceptions=True)`, re-raise anything else, then raise one
        error naming every failed host, if any failed."""
        for spec, outcome in zip(specs, outcomes, strict=True):
            if isinstance(outcome, ProvisionError):
                self.by_host[spec.host.name] = str(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        self.raise_if_any()

    def raise_if_any(self) -> None:
        if self.by_host:
            hosts = ", ".join(self.by_host)
            reasons = "; ".join(f"{h}: {why}" for h, why in self.by_host.items())
            raise ProvisionError(f"ssh hosts not brought up ({hosts}): {reasons}")


class SshProvider:
    listen_address: str | None = None  # the agents come through SSH forwards to loopback

    def __init__(
        self,
        root: Path,
        run_id: str,
        *,
        wheel_cache: Path | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.root = root
        self.run_id = run_id
        self.wheel_cache = wheel_cache
        self.connect_timeout = connect_timeout
        self.remotes: dict[str, _Remote] = {}
        self._houses: dict[wh.Target, asyncio.Task[wh.Wheelhouse]] = {}
        self._installs: dict[tuple[str, int, str], asyncio.Lock] = {}

    def capabilities(self) -> Capabilities:
        # Real machines on real networks: phalanx does not break them.
        return Capabilities.none("ssh hosts")

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        await self.down(self.remotes)

    def addresses(self, hosts: list[Host]) -> dict[str, str]:
        # How the hosts reach one another: their cluster address; the SSH
        # address is how this machine reaches them (it may be a jump or NAT).
        return {h.name: h.ip or ssh_address(h) for h in hosts}

    def diskmounts(self, host: Host) -> str:
        # A real machine's disks are its own business: phalanx mounts none.
        return ""

    # --- up -------------------------------------------------------------------------

    async def up(self, specs: list[AgentSpec]) -> None:
        failures = _Failures()
        prepared = await asyncio.gather(
            *(self._prepare(spec.host) for spec in specs), return_exceptions=True
        )
        # Every connection made is kept (for `down`) before any error is raised.
        for spec, outcome in zip(specs, prepared, strict=True):
            if isinstance(outcome, _Remote):
                self.remotes[spec.host.name] = outcome
        failures.gathered(specs, prepared)
        started = await asyncio.gather(
            *(self._start(self.remotes[spec.host.name], spec) for spec in specs),
            return_exceptions=True,
        )
        failures.gathered(specs, started)

    async def _prepare(self, host: Host) -> _Remote:
        conn = await self._connect(host)
        try:
            python = await self._find_python(conn)
            remote = _Remote(host, conn, python)
            house = await self._wheelhouse(wh.Target(python.version, python.machine))
            await self._install(remote, house)
        except BaseException:
            conn.close()
            raise
        return remote

    async def _connect(self, host: Host) -> asyncssh.SSHClientConnection:
        access = host.ssh or SshAccess()
        address = ssh_address(host)
        where = f"{address}:{access.port}"
        known_hosts = _local_path(access.known_hosts or "~/.ssh/known_hosts")
        if not Path(known_hosts).is_file():
            # asyncssh would take no known_hosts as "accept any host key".
            raise ProvisionError(f"no known_hosts file {known_hosts} to check {where}'s host key")
        options: dict[str, object] = {}
        if access.key_file is not None:
            key_file = _local_path(access.key_file)
            if not Path(key_file).is_file():
                raise ProvisionError(f"no key file {key_file}")
            # That key and no other: not the SSH agent's, not ~/.ssh's.
            options.update(client_keys=[key_file], agent_path=None)
        user = access.user or _local_user()
        try:
            return await asyncssh.connect(
                address,
                port=access.port,
                username=user,
                known_hosts=known_hosts,
                connect_timeout=self.connect_timeout,
                **options,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise ProvisionError(
                f"the host key of {where} does not match {known_hosts} ({exc.reason}); "
                "phalanx never accepts an unknown host key"
            ) from exc
        except asyncssh.PermissionDenied as exc:
            key = f" with {access.key_file}" if access.key_file else ""
            raise ProvisionError(f"{where} refused the login as {user!r}{key}") from exc
        except asyncssh.KeyImportError as exc:
            raise ProvisionError(f"cannot read the key {access.key_file}: {exc}") from exc
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            raise ProvisionError(f"cannot reach {where}: {reason}") from exc

    async def _find_python(self, conn: asyncssh.SSHClientConnection) -> RemotePython:
        done = await self._run(conn, _FIND_PYTHONS, "look for Python")
        chosen = choose_python(_text(done.stdout))
        if isinstance(chosen, str):
            raise ProvisionError(chosen)
        return chosen

    async def _wheelhouse(self, target: wh.Target) -> wh.Wheelhouse:
        """One wheelhouse per target, built once however many hosts need it."""
        if target not in self._houses:
            self._houses[target] = asyncio.ensure_future(
                asyncio.to_thread(wh.wheelhouse, target, self.wheel_cache)
            )
        try:
            return await asyncio.shield(self._houses[target])
        except (wh.WheelhouseError, OSError) as exc:
            raise ProvisionError(f"cannot build the agent's wheelhouse: {exc}") from exc

    async def _install(self, remote: _Remote, house: wh.Wheelhouse) -> None:
        access = remote.host.ssh or SshAccess()
        where = (ssh_address(remote.host), access.port, str(remote.conn.get_extra_info("username")))
        # Two hosts of a cluster may be one machine and one account: one install.
        async with self._installs.setdefault(where, asyncio.Lock()):
            await self._install_once(remote, house)

    async def _install_once(self, remote: _Remote, house: wh.Wheelhouse) -> None:
        conn, base = remote.conn, cache_dir()
        marker = await self._run(
            conn,
            f"test -x {base}/venv/bin/python && cat {base}/{INSTALLED} 2>/dev/null; exit 0",
            "read the agent's install marker",
        )
        if _text(marker.stdout).split() == [house.key]:
            return
        log = host_dir(self.root, remote.host.name) / "install.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        await self._run(conn, f"rm -rf {base}/venv {base}/wheels {base}/{INSTALLED} && "
                        f"mkdir -p {base}/wheels", "make the agent's folder")  # fmt: skip
        try:
            async with conn.start_sftp_client() as sftp:
                await sftp.put([str(w) for w in house.wheels], f"{base}/wheels")
        except (OSError, asyncssh.Error) as exc:
            raise ProvisionError(f"cannot copy the agent's wheels: {exc}") from exc
        pip = next(w.name for w in house.wheels if w.name.startswith("pip-"))
        install = (
            f"{shlex.quote(remote.python.path)} -m venv --without-pip {base}/venv && "
            f"{base}/venv/bin/python {base}/wheels/{pip}/pip install --no-index "
            f"--find-links {base}/wheels --disable-pip-version-check --no-warn-script-location --no-cache-dir "
            f"--quiet phalanx"
        )
        done = await self._run(conn, f"cd && {install} 2>&1", "install the agent", check=False)
        log.write_text(f"$ {install}\n{_text(done.stdout)}")
        if done.exit_status != 0:
            last = (_text(done.stdout).strip().splitlines() or ["(no output)"])[-1]
            raise ProvisionError(f"installing the agent failed ({last}); see {log}")
        await self._run(conn, f"rm -rf {base}/wheels && echo {house.key} > {base}/{INSTALLED}",
                        "mark the agent installed")  # fmt: skip
        remote.installed = True

    async def _run(
        self, conn: asyncssh.SSHClientConnection, command: str, what: str, *, check: bool = True
    ) -> asyncssh.SSHCompletedProcess:
        try:
            # The account's login shell may be any (csh, fish): sh runs the command.
            done = await conn.run(
                f"exec /bin/sh -c {shlex.quote(command)}", timeout=COMMAND_TIMEOUT
            )
        except (OSError, asyncssh.Error) as exc:
            raise ProvisionError(f"cannot {what}: {exc}") from exc
        if check and done.exit_status != 0:
            error = _text(done.stderr).strip() or f"exit status {done.exit_status}"
            raise ProvisionError(f"cannot {what}: {error}")
        return done

    async def _start(self, remote: _Remote, spec: AgentSpec) -> None:
        url = urlsplit(spec.url)
        dest = (url.hostname or "127.0.0.1", url.port or 80)

        async def tunnel(_host: str, port: int) -> SSHForwarder:
            # Every connection through the forward is known for as long as it
            # is open: its client on the host is asked for by its ports there.
            assert remote.listener is not None
            on_host = Forwarded(spec.host.name, port, remote.listener.get_port())
            try:
                _, peer = await asyncio.get_running_loop().create_connection(
                    lambda: _Tracked(on_host), *dest
                )
            except OSError as exc:
                raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
            return SSHForwarder(peer)

        try:
            # On the coordinator's own port where the remote has it free: a
            # stage's `@coordinator@:@port@` (loopback) then reaches it too.
            try:
                remote.listener = await remote.conn.create_server(tunnel, "127.0.0.1", dest[1])
            except (OSError, asyncssh.Error, asyncssh.ChannelListenError):
                remote.listener = await remote.conn.create_server(tunnel, "127.0.0.1", 0)
        except (OSError, asyncssh.Error, asyncssh.ChannelListenError) as exc:
            raise ProvisionError(
                f"the SSH server refuses a reverse port forward (AllowTcpForwarding?): {exc}"
            ) from exc
        agent_url = f"ws://127.0.0.1:{remote.listener.get_port()}{url.path}"
        venv_python = f'"$HOME"/{cache_dir()}/venv/bin/python'
        # The run's id in the folder's name tells whose a leftover is.
        prefix = f"phalanx-agent-{self.run_id}-"
        script = "\n".join(
            [
                "echo $$",
                "IFS= read -r PHALANX_AGENT_TOKEN || exit 2",
                "export PHALANX_AGENT_TOKEN",
                f'work=$(mktemp -d "${{TMPDIR:-/tmp}}"/{shlex.quote(prefix)}XXXXXXXX) || exit 2',
                'cd "$work" && work=$(pwd -P) && echo "$work" || exit 2',
                f"exec {venv_python} -m phalanx.host --coordinator {shlex.quote(agent_url)} "
                f'--name {shlex.quote(spec.host.name)} --workdir "$work" '
                f"--give-up {GIVE_UP_AFTER:g} </dev/null 2>&1",
            ]
        )
        log_path = agent_log(host_dir(self.root, spec.host.name))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            process = await remote.conn.create_process(
                f"exec /bin/sh -c {shlex.quote(script)}", encoding=None, stderr=asyncssh.STDOUT
            )
            remote.process = process
            process.stdin.write(spec.token.encode() + b"\n")
            pid = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
            workdir = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise ProvisionError(f"cannot start the agent: {exc or 'no answer'}") from exc
        if not pid.strip().isdigit() or not workdir.startswith(b"/"):
            raise ProvisionError(
                f"cannot start the agent: {(pid + workdir).decode(errors='replace')}"
            )
        remote.pid, remote.workdir = int(pid), workdir.decode().strip()
        remote.pump = asyncio.ensure_future(_pump(process, log_path))

    # --- down -----------------------------------------------------------------------

    async def down(self, lost: Collection[str] = ()) -> None:
        """End every agent, what its stages left and its working directory;
        log out. An agent in `lost` is not waited for."""
        remotes, self.remotes = self.remotes, {}
        await asyncio.gather(*(self._stop(r, r.host.name in lost) for r in remotes.values()))

    async def _stop(self, remote: _Remote, lost: bool) -> None:
        try:
            if remote.process is not None and not lost:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(remote.process.wait_closed(), EXIT_GRACE)
            if remote.pid is not None and remote.workdir is not None:
                venv_python = f'"$HOME"/{cache_dir()}/venv/bin/python'
                try:
                    await self._run(
                        remote.conn,
                        f"{venv_python} -m phalanx.host.leftovers {remote.pid} "
                        f"{shlex.quote(remote.workdir)}",
                        "end what the agent left",
                    )
                except ProvisionError as exc:
                    # The run is over; its host's log says what may be left.
                    log = agent_log(host_dir(self.root, remote.host.name))
                    with contextlib.suppress(OSError), log.open("a") as f:
                        f.write(f"phalanx: {exc}\n")
        finally:
            if remote.process is not None:
                remote.process.close()
            if remote.pump is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(remote.pump, EXIT_GRACE)
            if remote.listener is not None:
                remote.listener.close()
            remote.conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(remote.conn.wait_closed(), EXIT_GRACE)


async def _pump(process: asyncssh.SSHClientProcess[bytes], log_path: Path) -> None:
    """The agent's output, into its log in the run folder."""
    with log_path.open("ab") as log, contextlib.suppress(OSError, asyncssh.Error):
        while chunk := await process.stdout.read(READ_SIZE):
            log.write(chunk)
            log.flush()


def _local_user() -> str:
    import getpass

    return getpass.getuser()


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""
