"""Network faults between hosts that each have a network namespace of their
own (the `netns` provider): Jepsen's nemesis, with iptables and tc.

A cut is made where the packets arrive: in each host's namespace, a chain
of phalanx's own (`PHALANX-FAULTS`, hooked first in INPUT) DROPs what comes
from the hosts it may not reach, so a TCP connect across the cut times out
as it would on a real network (a REJECT, or a DROP on the way out, fails at
once, which no real partition does). Its first rule accepts the
coordinator's address: the agents' own link is never cut. Healing deletes
the chain, and the `netem` root qdisc `slow` put on a host's interface.

iptables is run through its nftables backend when it is there
(`iptables-nft`): the legacy xtables modules are optional in current
kernels, nf_tables is what they ship.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable, Mapping, Sequence

from phalanx.providers.base import FaultError

CHAIN = "PHALANX-FAULTS"
COMMAND_TIMEOUT = 30.0  # seconds for one iptables or tc call

# host → the hosts whose packets it drops
Cuts = dict[str, set[str]]


def known(hosts: Iterable[str], names: Iterable[str]) -> list[str]:
    """`names`, each one of `hosts`, else a FaultError naming the hosts there are."""
    hosts = list(hosts)
    found = []
    for name in names:
        if name not in hosts:
            raise FaultError(
                f"no host {name!r} in this run (its hosts: {', '.join(sorted(hosts))})"
            )
        found.append(name)
    return found


def partitioned(hosts: Iterable[str], groups: Sequence[Sequence[str]]) -> Cuts:
    """The cuts of a partition: hosts of one group reach only each other;
    a host in no group reaches no one."""
    hosts = list(hosts)
    group_of: dict[str, int] = {}
    for index, group in enumerate(groups):
        for name in known(hosts, group):
            if name in group_of and group_of[name] != index:
                raise FaultError(f"{name} is in two groups of the partition")
            group_of[name] = index
    return {
        name: {
            peer
            for peer in hosts
            if peer != name and (name not in group_of or group_of.get(peer) != group_of[name])
        }
        for name in hosts
    }


def isolated(hosts: Iterable[str], cuts: Cuts, host: str) -> Cuts:
    """`cuts` with `host` cut off from every other host."""
    hosts = list(hosts)
    (name,) = known(hosts, [host])
    blocked = {peer: set(cuts.get(peer, ())) for peer in hosts}
    for peer in hosts:
        if peer != name:
            blocked[name].add(peer)
            blocked[peer].add(name)
    return blocked


def iptables_restore() -> str:
    """The iptables-restore to use: the nftables backend's when installed."""
    for name in ("iptables-nft-restore", "iptables-restore"):
        if (path := shutil.which(name)) is not None:
            return path
    raise FaultError(
        "network faults need iptables on the coordinator's machine (apt-get install iptables)"
    )


class NetnsFaults:
    """`NetworkFaults` for hosts in network namespaces of their own.

    `namespaces`: host name → namespace; `addresses`: host name → its IP on
    the bridge; `coordinator`: the coordinator's address there, never cut;
    `interface`: the host's interface inside its namespace (for `slow`);
    `links`: per host, the `tc` lines that give that interface the host's
    link conditions, put back when a `slow` on it is healed.

    A partition describes the whole network: it replaces the cuts made
    before it. `isolate` adds to them; `slow` is independent of both, and
    replaces the host's outgoing link conditions until it is healed.
    """

    def __init__(
        self,
        *,
        namespaces: Mapping[str, str],
        addresses: Mapping[str, str],
        coordinator: str,
        interface: str = "eth0",
        links: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        missing = sorted(set(namespaces) - set(addresses))
        if missing:
            raise ValueError(f"no address for {', '.join(missing)}")
        self.namespaces = dict(namespaces)
        self.addresses = {name: addresses[name] for name in namespaces}
        self.coordinator = coordinator
        self.interface = interface
        self.links = {name: list(lines) for name, lines in (links or {}).items() if lines}
        # host → the hosts whose packets it drops now
        self.blocked: Cuts = {name: set() for name in namespaces}
        self.hooked: set[str] = set()  # hosts whose INPUT jumps to the chain
        self.slowed: set[str] = set()
        self._lock = asyncio.Lock()  # one change of the network at a time

    # --- NetworkFaults ------------------------------------------------------------

    async def partition(self, groups: Sequence[Sequence[str]]) -> None:
        blocked = partitioned(self.namespaces, groups)
        async with self._lock:
            await self._cut(blocked)

    async def isolate(self, host: str) -> None:
        async with self._lock:
            await self._cut(isolated(self.namespaces, self.blocked, host))

    async def slow(self, host: str, delay: float) -> None:
        (name,) = known(self.namespaces, [host])
        if delay < 0:
            raise FaultError(f"cannot slow {name} by a negative delay")
        milliseconds = f"{delay * 1000:.3f}ms"
        async with self._lock:
            self.slowed.add(name)  # before: a half-applied qdisc is healed too
            netem = ["tc", "qdisc", "replace", "dev", self.interface, "root", "netem"]
            code, err = await self._run(name, [*netem, "delay", milliseconds])
            if code != 0:
                self.slowed.discard(name)
                if "unknown" in err.lower() and "qdisc" in err.lower():
                    raise FaultError(
                        f"cannot slow {name}: this kernel has no netem qdisc (sch_netem) "
                        f"for tc to delay packets with ({err.strip()})"
                    )
                raise FaultError(f"cannot slow {name}: tc failed: {err.strip()}")

    async def heal(self) -> None:
        async with self._lock:
            restore = iptables_restore() if self.hooked else ""
            results = await asyncio.gather(
                *(self._unhook(name, restore) for name in sorted(self.hooked)),
                *(self._unslow(name) for name in sorted(self.slowed)),
            )
            problems = [problem for problem in results if problem]
            if problems:
                raise FaultError("heal failed: " + "; ".join(problems))

    # --- how ---------------------------------------------------------------------------

    async def _cut(self, blocked: Cuts) -> None:
        """Make every host drop what `blocked` says, rewriting only the
        namespaces whose cut changes."""
        restore = iptables_restore()
        changed = [name for name in self.namespaces if blocked[name] != self.blocked[name]]
        results = await asyncio.gather(
            *(self._write(name, blocked[name], restore) for name in changed)
        )
        problems = [problem for problem in results if problem]
        if problems:
            raise FaultError("; ".join(problems))

    async def _write(self, name: str, peers: set[str], restore: str) -> str | None:
        lines = ["*filter", f":{CHAIN} - [0:0]", f"-A {CHAIN} -s {self.coordinator} -j ACCEPT"]
        lines += [
            f"-A {CHAIN} -s {self.addresses[peer]} -j DROP"
            for peer in sorted(peers)
            if self.addresses[peer] != self.coordinator
        ]
        hook = name not in self.hooked
        if hook:
            lines.append(f"-I INPUT -j {CHAIN}")
        lines.append("COMMIT")
        # Marked first: a chain half made is still removed by heal.
        self.hooked.add(name)
        code, err = await self._run(name, [restore, "--noflush"], "\n".join(lines) + "\n")
        if code != 0:
            if hook:
                self.hooked.discard(name)
            return f"cannot cut {name} off: iptables failed: {err.strip()}"
        self.blocked[name] = set(peers)
        return None

    async def _unhook(self, name: str, restore: str) -> str | None:
        script = f"*filter\n-D INPUT -j {CHAIN}\n-F {CHAIN}\n-X {CHAIN}\nCOMMIT\n"
        code, err = await self._run(name, [restore, "--noflush"], script)
        if code != 0:
            return f"{name}: iptables failed: {err.strip()}"
        self.hooked.discard(name)
        self.blocked[name] = set()
        return None

    async def _unslow(self, name: str) -> str | None:
        code, err = await self._run(name, ["tc", "qdisc", "del", "dev", self.interface, "root"])
        # "Cannot delete qdisc with handle of zero": there was none left.
        if code != 0 and "handle of zero" not in err and "No such file" not in err:
            return f"{name}: tc failed: {err.strip()}"
        if lines := self.links.get(name):
            code, err = await self._run(name, ["tc", "-batch", "-"], "\n".join(lines) + "\n")
            if code != 0:
                return f"{name}: cannot restore its link conditions: tc failed: {err.strip()}"
        self.slowed.discard(name)
        return None

    async def _run(self, name: str, argv: list[str], stdin: str | None = None) -> tuple[int, str]:
        """Run `argv` in host `name`'s namespace: its exit code and stderr."""
        try:
            process = await asyncio.create_subprocess_exec(
                "ip",
                "netns",
                "exec",
                self.namespaces[name],
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return 127, f"cannot start ip netns exec: {exc}"
        try:
            _, err = await asyncio.wait_for(
                process.communicate(stdin.encode() if stdin is not None else None),
                COMMAND_TIMEOUT,
            )
        except TimeoutError:
            process.kill()
            await process.wait()
            return 124, f"{argv[0]} did not finish within {COMMAND_TIMEOUT:g}s"
        return process.returncode or 0, err.decode(errors="replace")
