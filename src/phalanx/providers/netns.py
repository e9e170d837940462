"""The `netns` provider: every host is a `phalanx agent` process on this
machine, as with `local`, but inside network, UTS and mount namespaces of
its own, so it has its own address, its own `hostname` and its own
/etc/hosts, and two hosts may both listen on one port.

    bridge (network.bridge_name, or phx<hash>br)  ← the coordinator's address
      ├─ phx<hash>v0 ══ eth0 in namespace phx-<run id>-0  (host 0's ip, mac)
      └─ phx<hash>v1 ══ eth0 in namespace phx-<run id>-1  …

The agent, forked by the fork server, enters its namespace itself as `ip
netns exec` would (host/namespaces.py): a mount namespace in which the
files of /etc/netns/<namespace>/ are bind-mounted over /etc (its hosts
file: every host's names and the coordinator's), and a UTS one with the
host's name.

Everything made carries the run: namespaces the run id, links a hash of
it. Before anything is made, a record of it is written under STATE_DIR
with the owning process, so what a killed run left is removed at the next
start (`open`) or by `phalanx cleanup`, and never what a live run owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from phalanx.model import Cluster, Host
from phalanx.providers import bridge, bridgefaults
from phalanx.providers.base import (
    AgentSpec,
    Capabilities,
    NetworkFaults,
    ProvisionError,
    Refused,
)
from phalanx.providers.local import LocalProvider
from phalanx.providers.netfaults import NetnsFaults

STATE_DIR = Path(os.environ.get("PHALANX_NETNS_STATE", "/run/phalanx/netns"))
ETC_NETNS = Path("/etc/netns")
INTERFACE = "eth0"
COORDINATOR_NAME = "phalanx-coordinator"
_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21
# Where a per-run network is taken from when the cluster names none.
_POOL = ipaddress.IPv4Network("10.128.0.0/9")


def lacking_capabilities(*names: str) -> list[str]:
    """Those of `names` (CAP_NET_ADMIN, CAP_SYS_ADMIN) this process lacks."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return list(names)
    match = re.search(r"^CapEff:\s*([0-9a-fA-F]+)", status, re.MULTILINE)
    effective = int(match.group(1), 16) if match else 0
    bits = {"CAP_NET_ADMIN": _CAP_NET_ADMIN, "CAP_SYS_ADMIN": _CAP_SYS_ADMIN}
    return [name for name in names if not effective >> bits[name] & 1]


def missing_privileges() -> str | None:
    """Why this process cannot make namespaces and links, or None."""
    lacking = lacking_capabilities("CAP_NET_ADMIN", "CAP_SYS_ADMIN")
    if not lacking:
        return None
    return (
        "the netns provider makes network namespaces, a bridge and links, which needs root "
        f"(CAP_NET_ADMIN and CAP_SYS_ADMIN); this process lacks {' and '.join(lacking)}: "
        "run phalanx as root, or use --provider local"
    )


def label(run_id: str) -> str:
    """The short mark of a run on its links (interface names are ≤ 15 characters)."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:6]


# --- addresses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Where everything sits on the hosts' network."""

    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address  # the bridge's address: the coordinator's
    ips: dict[str, ipaddress.IPv4Address]

    def interface(self, address: ipaddress.IPv4Address) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{address}/{self.subnet.prefixlen}")


def plan_addresses(
    cluster: Cluster,
    taken: Collection[tuple[ipaddress.IPv4Network, str]],
    seed: int,
    bridge_name: str,
) -> Plan:
    """The hosts' network: the cluster's `network` (its `ip` is the
    bridge's, as an XrdTest master's), else the /24 of the hosts' own
    addresses, else a free /24 of 10.128.0.0/9; hosts without an `ip` get
    the next free ones (from `dhcp_range` when there is one). `taken`: the
    networks this machine already routes, with their devices; the hosts'
    network must not overlap one, except on its own bridge."""
    network = cluster.network
    given = {h.name: _v4(h.ip, f"host {h.name}'s ip") for h in cluster.hosts if h.ip}
    gateway: ipaddress.IPv4Address | None = None
    if network is not None and network.ip:
        gateway = _v4(network.ip, "the network's ip")
        subnet = ipaddress.IPv4Network(f"{gateway}/{network.netmask or 24}", strict=False)
    elif given:
        first = next(iter(given.values()))
        prefix = network.netmask if network is not None and network.netmask else "24"
        subnet = ipaddress.IPv4Network(f"{first}/{prefix}", strict=False)
    else:
        subnet = _free_subnet(taken, seed)
    for name, address in given.items():
        if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
            raise ProvisionError(f"host {name}'s ip {address} is not on the network {subnet}")
    clash = [(net, dev) for net, dev in taken if net.overlaps(subnet) and dev != bridge_name]
    if clash:
        net, dev = clash[0]
        raise ProvisionError(
            f"the hosts' network {subnet} overlaps {net}, already routed on this machine "
            f"(dev {dev}: maybe another run of this cluster); give the cluster a network of "
            "its own, or hosts without an ip"
        )
    used = set(given.values())
    if gateway is None:
        gateway = _next_free(subnet.hosts(), used)
    elif gateway in used:
        raise ProvisionError(f"the network's ip {gateway} is also a host's")
    used.add(gateway)
    pool = subnet.hosts()
    if network is not None and network.dhcp_range:
        low, high = (_v4(a, "network.dhcp_range") for a in network.dhcp_range)
        pool = (a for a in subnet.hosts() if low <= a <= high)
    ips = {}
    for host in cluster.hosts:
        if host.name in given:
            ips[host.name] = given[host.name]
        else:
            ips[host.name] = _next_free(pool, used)
            used.add(ips[host.name])
    return Plan(subnet, gateway, ips)


def _v4(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ProvisionError(
            f"{what} {text} is not an IPv4 address (netns hosts are IPv4)"
        ) from None


def _next_free(
    candidates: object, used: Collection[ipaddress.IPv4Address]
) -> ipaddress.IPv4Address:
    for address in candidates:  # type: ignore[attr-defined]
        if address not in used:
            return address  # type: ignore[no-any-return]
    raise ProvisionError("the hosts' network has no free address left")


def _free_subnet(
    taken: Collection[tuple[ipaddress.IPv4Network, str]], seed: int
) -> ipaddress.IPv4Network:
    count = 2 ** (24 - _POOL.prefixlen)
    base = int(_POOL.network_address)
    for step in range(count):
        candidate = ipaddress.IPv4Network((base + ((seed + step) % count) * 256, 24))
        if not any(net.overlaps(candidate) for net, _ in taken):
            return candidate
    raise ProvisionError(f"no free /24 left in {_POOL} for the hosts' network")


def hosts_file(cluster: Cluster, plan: Plan) -> str:
    """/etc/hosts as every host sees it: the hosts by name, short name and
    aliases, and the coordinator by its names, on the bridge."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for host in cluster.hosts:
        names = dict.fromkeys([host.name, host.short_name, *host.aliases])
        lines.append(f"{plan.ips[host.name]}\t{' '.join(names)}")
    coordinator = dict.fromkeys([*cluster.coordinator_aliases, COORDINATOR_NAME])
    lines.append(f"{plan.gateway}\t{' '.join(coordinator)}")
    return "\n".join(lines) + "\n"


# --- the record of what a run made, and removing it ----------------------------------------


@dataclass
class Record:
    run_id: str
    pid: int
    started: str  # the owner's start time (/proc/PID/stat), against a reused pid
    bridge: str
    bridge_made: bool  # False: the cluster's bridge existed; only our address goes
    bridge_address: str | None  # what we added to it, as ip/prefix
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # veths: they go with their namespace
    taps: list[str] = field(default_factory=list)  # VMs' taps: removed one by one
    tables: list[str] = field(default_factory=list)  # nftables bridge tables (VMs' faults)


def process_started(pid: int) -> str | None:
    """When `pid` started (in clock ticks since boot), as /proc says: with
    the pid, what tells a live owner from a pid reused since it died."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(record: Record) -> bool:
    return process_started(record.pid) == record.started


@contextlib.asynccontextmanager
async def _locked(state_dir: Path) -> AsyncIterator[None]:
    """One process at a time picks a network, makes its bridge, or sweeps."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.wait_for(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX), 60)
        yield
    finally:
        os.close(fd)  # releases the lock


async def _remove(record: Record) -> list[str]:
    """Remove what `record` says was made, that still exists; what was removed."""
    existing_links = await bridge.links()
    existing_ns = await bridge.namespaces()
    removed: list[str] = []
    lines: list[str] = []
    namespaces = [ns for ns in record.namespaces if ns in existing_ns]
    for pids in await asyncio.gather(*(bridge.pids_in(ns) for ns in namespaces)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # A namespace takes its end of a veth pair, and the pair, with it: the
    # kernel removes them together, far faster than one `link del` at a time.
    for ns in namespaces:
        lines.append(f"netns del {ns}")
        removed.append(f"namespace {ns}")
    veths = [link for link in record.links if link in existing_links]
    for link in veths:
        removed.append(f"link {link}")
    for tap in record.taps:
        if tap in existing_links:
            lines.append(f"link del {tap}")
            removed.append(f"tap {tap}")
    if record.bridge in existing_links:
        if record.bridge_made:
            lines.append(f"link del {record.bridge}")
            removed.append(f"bridge {record.bridge}")
        elif record.bridge_address:
            lines.append(f"addr del {record.bridge_address} dev {record.bridge}")
            removed.append(f"address {record.bridge_address} of {record.bridge}")
    await bridge.ip_batch(lines, force=True)
    for table in record.tables:
        if await bridgefaults.remove_table(table):
            removed.append(f"nftables table bridge {table}")
    await _gone(veths)
    for ns in record.namespaces:
        folder = ETC_NETNS / ns
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"folder {folder}")
    return removed


async def _gone(veths: list[str], within: float = 10.0) -> None:
    """Until the kernel has removed the pairs of the deleted namespaces;
    what is still there then is removed one by one."""
    deadline = asyncio.get_running_loop().time() + within
    left = veths
    while left and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
        existing = await bridge.links()
        left = [link for link in left if link in existing]
    await bridge.ip_batch([f"link del {link}" for link in left], force=True)


async def sweep(state_dir: Path = STATE_DIR) -> dict[str, list[str]]:
    """Remove what runs whose owner is dead left; per run id, what went.
    Runs of live processes are left alone."""
    if not state_dir.is_dir():
        return {}
    swept: dict[str, list[str]] = {}
    async with _locked(state_dir):
        for path, record in _records(state_dir):
            if _alive(record):
                continue
            swept[record.run_id] = await _remove(record)
            path.unlink(missing_ok=True)
    return swept


def _records(state_dir: Path) -> list[tuple[Path, Record]]:
    found = []
    for path in sorted(state_dir.glob("*.json")):
        try:
            found.append((path, Record(**json.loads(path.read_text()))))
        except (OSError, ValueError, TypeError):
            continue
    return found


# --- a run's network: its bridge, addressed, and the links on it ------------------------


async def make_network(
    cluster: Cluster,
    run_id: str,
    state_dir: Path,
    bridge_name: str,
    lines: list[str],
    namespaces: Collection[str] = (),
    links: Collection[str] = (),
    taps: Collection[str] = (),
    tables: Collection[str] = (),
) -> tuple[Plan, Record]:
    """The cluster's bridge (made, or the existing one given our address),
    its addresses planned, and `lines` (the hosts' links: veths into
    namespaces, VMs' taps) run in the same batch. The record of it all is
    saved before anything is made; when making fails, what was made goes."""
    async with _locked(state_dir):
        existing = await bridge.links()
        kind = existing.get(bridge_name)
        if kind is not None and kind != "bridge":
            raise ProvisionError(f"{bridge_name} exists and is not a bridge")
        for _, other in _records(state_dir):
            if other.bridge == bridge_name and _alive(other):
                # Its hosts would have these hosts' addresses on one wire.
                raise ProvisionError(
                    f"the bridge {bridge_name} is in use by run {other.run_id} "
                    f"(process {other.pid}); a cluster with a network.bridge_name "
                    "runs once at a time"
                )
        mark = label(run_id)
        plan = plan_addresses(cluster, await bridge.routed(), int(mark, 16), bridge_name)
        address = plan.interface(plan.gateway)
        has = kind is not None and await _has_address(bridge_name, address)
        record = Record(
            run_id=run_id,
            pid=os.getpid(),
            started=process_started(os.getpid()) or "",
            bridge=bridge_name,
            bridge_made=kind is None,
            bridge_address=None if has else address.with_prefixlen,
            namespaces=list(namespaces),
            links=list(links),
            taps=list(taps),
            tables=list(tables),
        )
        _save(record, state_dir)
        batch = bridge.bridge_lines(bridge_name, None if has else address, kind is None)
        try:
            await bridge.ip_batch(batch + lines)
        except BaseException:
            await _remove(record)
            (state_dir / f"{mark}.json").unlink(missing_ok=True)
            raise
    return plan, record


async def remove_network(record: Record, state_dir: Path) -> None:
    """Remove what `make_network` made, and its record."""
    async with _locked(state_dir):
        await _remove(record)
        (state_dir / f"{label(record.run_id)}.json").unlink(missing_ok=True)


def _save(record: Record, state_dir: Path) -> None:
    path = state_dir / f"{label(record.run_id)}.json"
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(asdict(record)))
    scratch.replace(path)


def _tap_record(tap: str, bridge_name: str) -> Record:
    pid = os.getpid()
    return Record(
        f"tap {tap}", pid, process_started(pid) or "", bridge_name, False, None, taps=[tap]
    )


async def add_tap(tap: str, bridge_name: str, state_dir: Path = STATE_DIR) -> None:
    """A tap on an existing bridge, outside any run's network (a VM that
    arrived from another hypervisor), recorded first: a crashed owner's tap
    is swept as a run's links are."""
    record = _tap_record(tap, bridge_name)
    async with _locked(state_dir):
        _save(record, state_dir)
        try:
            await bridge.ip_batch(
                [f"tuntap add dev {tap} mode tap", bridge.attach(tap, bridge_name)]
            )
        except BaseException:
            await _remove(record)
            (state_dir / f"{label(record.run_id)}.json").unlink(missing_ok=True)
            raise


async def remove_tap(tap: str, bridge_name: str, state_dir: Path = STATE_DIR) -> None:
    """The tap `add_tap` made, and its record."""
    await remove_network(_tap_record(tap, bridge_name), state_dir)


async def _has_address(device: str, address: ipaddress.IPv4Interface) -> bool:
    shown = json.loads(await bridge.ip("-j", "-4", "addr", "show", "dev", device) or "[]")
    return any(
        info.get("local") == str(address.ip) for link in shown for info in link.get("addr_info", [])
    )


# --- the provider ------------------------------------------------------------------------


@dataclass(frozen=True)
class NetnsHost:
    """One host's network identity: what faults need to reach it."""

    name: str
    namespace: str
    ip: str
    veth: str  # the outer end, on the bridge
    interface: str = INTERFACE  # the inner end, in the namespace


class NetnsProvider:
    faults: NetworkFaults | None = None  # NetnsFaults once the network is made

    def __init__(
        self,
        cluster: Cluster,
        root: Path,
        run_id: str,
        python: str = sys.executable,
        state_dir: Path = STATE_DIR,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env`: the agents' environment (None: this process's; the
        service gives a minimal one: agentenv.py)."""
        self.cluster = cluster
        self.run_id = run_id
        self.state_dir = state_dir
        self.listen_address: str | None = None
        self.hosts: dict[str, NetnsHost] = {}
        self.plan: Plan | None = None
        # Hosts whose namespace is a process's, attached once it runs
        # (`attach`): a Docker container's, which joins no namespace by path.
        self.attached_later: set[str] = set()
        self._bridge = ""
        self._record: Record | None = None
        self._mark = label(run_id)
        self._agents = LocalProvider(root, python, namespace=self._namespace, env=env)

    # What faults need (NetnsFaults(namespaces=…, addresses=…, coordinator=…, interface=…)).
    @property
    def namespaces(self) -> dict[str, str]:
        return {name: h.namespace for name, h in self.hosts.items()}

    @property
    def ips(self) -> dict[str, str]:
        return {name: h.ip for name, h in self.hosts.items()}

    @property
    def interface(self) -> str:
        return INTERFACE

    def _names(self) -> tuple[str, dict[str, NetnsHost]]:
        network = self.cluster.network
        bridge_name = (network.bridge_name if network else None) or f"phx{self._mark}br"
        if len(bridge_name) > bridge.IFNAMSIZ:
            raise ProvisionError(
                f"network.bridge_name {bridge_name!r} is longer than {bridge.IFNAMSIZ} characters"
            )
        run = re.sub(r"[^A-Za-z0-9_.-]", "_", self.run_id)
        hosts = {
            h.name: NetnsHost(h.name, f"phx-{run}-{i}", "", f"phx{self._mark}v{i}")
            for i, h in enumerate(self.cluster.hosts)
        }
        return bridge_name, hosts

    def capabilities(self) -> Capabilities:
        faults = self.faults or Refused("the hosts' network is made when the provider opens")
        return replace(Capabilities.none("netns hosts"), faults=faults)

    async def open(self) -> None:
        problem = missing_privileges()
        if problem is not None:
            raise ProvisionError(problem)
        missing = bridge.tools_missing()
        if missing:
            raise ProvisionError(
                f"the netns provider needs {', '.join(missing)} (iproute2, util-linux) on PATH"
            )
        try:
            await sweep(self.state_dir)
            await self._check_links()
            await self._make()
        except (bridge.PlumbingError, OSError) as exc:
            raise ProvisionError(f"cannot make the hosts' network: {exc}") from exc

    async def _check_links(self) -> None:
        wanting = [h.name for h in self.cluster.hosts if h.link and bridge.needs_netem(h.link)]
        if wanting and await bridge.netem_missing():
            raise ProvisionError(
                f"host {wanting[0]}'s link asks for delay, jitter or loss, and this kernel has "
                "no netem qdisc (sch_netem): load it, or drop those link conditions"
            )

    async def _make(self) -> None:
        bridge_name, hosts = self._names()
        self._bridge = bridge_name
        now = [h for h in self.cluster.hosts if h.name not in self.attached_later]
        veths = {h.name: self._veth(h, hosts[h.name]) for h in now}
        lines = [f"netns add {v.netns}" for v in veths.values()]
        for veth in veths.values():
            lines += veth.lines(bridge_name)
        plan, self._record = await make_network(
            self.cluster,
            self.run_id,
            self.state_dir,
            bridge_name,
            lines,
            namespaces=[h.namespace for h in hosts.values()],
            links=[h.veth for h in hosts.values()],
        )
        self.plan = plan
        self.hosts = {
            name: NetnsHost(name, h.namespace, str(plan.ips[name]), h.veth)
            for name, h in hosts.items()
        }
        hosts_text = hosts_file(self.cluster, plan)
        for host in self.cluster.hosts:  # before any container mounts it
            etc = ETC_NETNS / hosts[host.name].namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_text)
        await asyncio.gather(*(self._inside(h, veths[h.name], plan) for h in now))
        outer = [
            line for h in now if h.link for line in bridge.qdisc_lines(veths[h.name].outer, h.link)
        ]
        await bridge.tc_batch(outer)
        self.listen_address = str(plan.gateway)
        self.faults = NetnsFaults(
            namespaces=self.namespaces,
            addresses=self.ips,
            coordinator=str(plan.gateway),
            interface=INTERFACE,
            links={
                h.name: bridge.qdisc_lines(INTERFACE, h.link) for h in self.cluster.hosts if h.link
            },
        )

    @staticmethod
    def _veth(host: Host, made: NetnsHost) -> bridge.Veth:
        return bridge.Veth(made.veth, made.namespace, mac=host.mac)

    async def _inside(self, host: Host, veth: bridge.Veth, plan: Plan) -> None:
        await bridge.ip_batch(veth.inner_lines(plan.interface(plan.ips[host.name])), veth.netns)
        if host.link:
            await bridge.tc_batch(bridge.qdisc_lines(veth.interface, host.link), veth.netns)

    async def attach(self, name: str, pid: int) -> None:
        """Host `name`'s network (one of `attached_later`) plumbed into the
        network namespace of process `pid`, which then goes by the host's
        namespace name, as a namespace the provider made would: faults,
        `link:` and the sweep find it so. The name holds the namespace
        (and the veth in it) until the network is removed."""
        host = next(h for h in self.cluster.hosts if h.name == name)
        made = self.hosts[name]
        assert self.plan is not None and name in self.attached_later
        veth = self._veth(host, made)
        try:
            await bridge.ip_batch(
                [f"netns attach {made.namespace} {pid}", *veth.lines(self._bridge)]
            )
            await self._inside(host, veth, self.plan)
            if host.link:
                await bridge.tc_batch(bridge.qdisc_lines(veth.outer, host.link))
        except bridge.PlumbingError as exc:
            raise ProvisionError(f"cannot plumb host {name}'s network: {exc}") from exc

    def _namespace(self, host: Host) -> str:
        return self.hosts[host.name].namespace

    def addresses(self, hosts: list[Host]) -> dict[str, str]:
        return {h.name: self.hosts[h.name].ip for h in hosts if h.name in self.hosts}

    def diskmounts(self, host: Host) -> str:
        # The hosts share this machine's file systems, as local ones do.
        return ""

    async def up(self, specs: list[AgentSpec]) -> None:
        unknown = [s.host.name for s in specs if s.host.name not in self.hosts]
        if unknown:
            raise ProvisionError(f"no network was made for {', '.join(unknown)}")
        await self._agents.up(specs)

    async def down(self, lost: Collection[str] = ()) -> None:
        await self._agents.down(lost)

    async def close(self) -> None:
        record, self._record = self._record, None
        if record is None:
            return
        self.listen_address = None
        self.faults = None
        # A caller cancelled meanwhile (a service shutting down) must not
        # leave half a network behind: the teardown goes on regardless.
        await asyncio.shield(self._teardown(record))

    async def _teardown(self, record: Record) -> None:
        await self._agents.down(())
        await remove_network(record, self.state_dir)


def describe(swept: Mapping[str, list[str]]) -> list[str]:
    """`phalanx cleanup`'s lines."""
    return [
        f"run {run_id}: removed {', '.join(what) if what else 'nothing (already gone)'}"
        for run_id, what in swept.items()
    ]
