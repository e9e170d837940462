"""Network faults between real network namespaces, seen by real TCP
connects: a connect across a partition times out, one within a group and
one to the coordinator's address succeed, and heal brings everything back.

The network is this file's own: four namespaces `phxt-flt-<id>-<n>` on a
bridge of its own, the bridge's address standing for the coordinator's.
Only what it made is removed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from phalanx.providers.base import FaultError
from phalanx.providers.netfaults import NetnsFaults

HOSTS = ("a", "b", "c", "d")
PORT = 7411
CONNECT_TIMEOUT = 1.5  # seconds before a connect across a cut counts as cut

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2 (ip)"),
    pytest.mark.skipif(
        shutil.which("iptables-nft-restore") is None and shutil.which("iptables-restore") is None,
        reason="needs iptables (apt-get install iptables)",
    ),
]

LISTEN = """
import socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=64)
print("ready", flush=True)
while True:
    connection, _ = server.accept()
    connection.close()
"""

# Connects to every address given, at once; prints {address: "ok"|"timeout"|error}.
CONNECT = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
port, timeout, addresses = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
def attempt(address):
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return "ok"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__
with ThreadPoolExecutor(len(addresses)) as pool:
    print(json.dumps(dict(zip(addresses, pool.map(attempt, addresses)))))
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def free_subnet() -> ipaddress.IPv4Network:
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, timeout=10
    ).stdout
    taken = []
    for line in routes.splitlines():
        word = line.split()[0] if line.split() else ""
        try:
            taken.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    for _ in range(50):
        net = ipaddress.IPv4Network(f"10.{random.randint(64, 127)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(other) for other in taken):
            return net
    raise RuntimeError("no free /24 for the test network")


@dataclass
class Network:
    namespaces: dict[str, str]
    addresses: dict[str, str]
    coordinator: str

    def faults(self) -> NetnsFaults:
        return NetnsFaults(
            namespaces=self.namespaces, addresses=self.addresses, coordinator=self.coordinator
        )

    async def reach(self, source: str) -> dict[str, str]:
        """What a connect from `source` to each host and the coordinator gives,
        by name ("coordinator" for its address)."""
        targets = {**{h: self.addresses[h] for h in HOSTS if h != source}}
        targets["coordinator"] = self.coordinator
        process = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            self.namespaces[source],
            sys.executable,
            "-c",
            CONNECT,
            str(PORT),
            str(CONNECT_TIMEOUT),
            *targets.values(),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        by_address = json.loads(out)
        return {name: by_address[address] for name, address in targets.items()}

    async def reach_all(self) -> dict[str, dict[str, str]]:
        found = await asyncio.gather(*(self.reach(h) for h in HOSTS))
        return dict(zip(HOSTS, found, strict=True))


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    tag = secrets.token_hex(3)
    subnet = free_subnet()
    ips = [str(ip) for ip in subnet.hosts()]
    bridge = f"phxtf{tag}br"
    namespaces = {h: f"phxt-flt-{tag}-{i}" for i, h in enumerate(HOSTS)}
    addresses = {h: ips[i + 1] for i, h in enumerate(HOSTS)}
    coordinator = ips[0]
    listeners: list[subprocess.Popen[bytes]] = []
    made_ns: list[str] = []
    made_links: list[str] = []
    try:
        sh("ip", "link", "add", bridge, "type", "bridge")
        made_links.append(bridge)
        sh("ip", "addr", "add", f"{coordinator}/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        for i, host in enumerate(HOSTS):
            ns, outside = namespaces[host], f"phxtf{tag}v{i}"
            sh("ip", "netns", "add", ns)
            made_ns.append(ns)
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
            made_links.append(outside)
            sh("ip", "link", "set", outside, "master", bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{addresses[host]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        # Everyone listens: the hosts in their namespaces, the "coordinator"
        # on the bridge's address.
        commands = [["ip", "netns", "exec", namespaces[h]] for h in HOSTS] + [[]]
        for prefix in commands:
            listener = subprocess.Popen(
                [*prefix, sys.executable, "-c", LISTEN, str(PORT)], stdout=subprocess.PIPE
            )
            listeners.append(listener)
        for listener in listeners:
            assert listener.stdout is not None
            assert listener.stdout.readline().strip() == b"ready"
        yield Network(namespaces, addresses, coordinator)
    finally:
        for listener in listeners:
            listener.kill()
            listener.wait(10)
        for ns in made_ns:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)
        for link in made_links:
            subprocess.run(["ip", "link", "delete", link], capture_output=True, timeout=30)


@pytest.fixture
async def faults(network: Network) -> AsyncIterator[NetnsFaults]:
    faults = network.faults()
    try:
        yield faults
    finally:
        await faults.heal()


def everyone_reaches_everyone(seen: dict[str, dict[str, str]]) -> bool:
    return all(result == "ok" for row in seen.values() for result in row.values())


async def test_a_partition_cuts_between_groups_and_never_to_the_coordinator(
    network: Network, faults: NetnsFaults
) -> None:
    assert everyone_reaches_everyone(await network.reach_all())

    await faults.partition([["a", "b"], ["c", "d"]])

    seen = await network.reach_all()
    assert seen["a"] == {"b": "ok", "c": "timeout", "d": "timeout", "coordinator": "ok"}
    assert seen["b"] == {"a": "ok", "c": "timeout", "d": "timeout", "coordinator": "ok"}
    assert seen["c"] == {"a": "timeout", "b": "timeout", "d": "ok", "coordinator": "ok"}
    assert seen["d"] == {"a": "timeout", "b": "timeout", "c": "ok", "coordinator": "ok"}

    await faults.heal()
    assert everyone_reaches_everyone(await network.reach_all())


async def test_a_host_in_no_group_reaches_only_the_coordinator(
    network: Network, faults: NetnsFaults
) -> None:
    await faults.partition([["a", "b", "c"]])

    seen = await network.reach_all()
    assert seen["d"] == {"a": "timeout", "b": "timeout", "c": "timeout", "coordinator": "ok"}
    assert seen["a"] == {"b": "ok", "c": "ok", "d": "timeout", "coordinator": "ok"}


async def test_a_new_partition_replaces_the_last(network: Network, faults: NetnsFaults) -> None:
    await faults.partition([["a", "b"], ["c", "d"]])
    await faults.partition([["a", "c"], ["b", "d"]])

    seen = await network.reach_all()
    assert seen["a"] == {"b": "timeout", "c": "ok", "d": "timeout", "coordinator": "ok"}


async def test_isolate_cuts_one_host_off_from_every_other(
    network: Network, faults: NetnsFaults
) -> None:
    await faults.isolate("c")

    seen = await network.reach_all()
    assert seen["c"] == {"a": "timeout", "b": "timeout", "d": "timeout", "coordinator": "ok"}
    assert seen["a"] == {"b": "ok", "c": "timeout", "d": "ok", "coordinator": "ok"}

    await faults.heal()
    assert everyone_reaches_everyone(await network.reach_all())


async def test_heal_with_no_fault_changes_nothing(network: Network) -> None:
    faults = network.faults()
    await faults.heal()
    await faults.heal()
    assert everyone_reaches_everyone(await network.reach_all())
    assert not faults.hooked


async def test_an_unknown_host_is_refused_by_name(network: Network, faults: NetnsFaults) -> None:
    with pytest.raises(FaultError, match=r"no host 'zz'.*its hosts: a, b, c, d"):
        await faults.isolate("zz")
    with pytest.raises(FaultError, match="two groups"):
        await faults.partition([["a", "b"], ["b", "c"]])


def netem_missing(network: Network) -> str | None:
    """Why netem cannot be used in these namespaces, or None."""
    ns = network.namespaces["a"]
    netem = ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    probe = subprocess.run(
        ["ip", "netns", "exec", ns, *netem],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"tc netem is not available: {probe.stderr.strip()}"
    subprocess.run(
        ["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "lo", "root"], timeout=30
    )
    return None


async def test_slow_delays_a_host_or_says_the_kernel_cannot(
    network: Network, faults: NetnsFaults
) -> None:
    """Where the kernel has no sch_netem (this host's) a stage is told so;
    slowing on a real netem is measured inside a VM (test_netem_vm.py)."""
    if netem_missing(network) is not None:
        with pytest.raises(FaultError, match="no netem qdisc"):
            await faults.slow("a", 0.2)
        assert not faults.slowed
        return
    await faults.slow("a", 0.2)
    assert faults.slowed == {"a"}
    await faults.heal()
    assert not faults.slowed
    assert everyone_reaches_everyone(await network.reach_all())


async def test_healing_a_slowed_host_puts_its_link_conditions_back(network: Network) -> None:
    ns = network.namespaces["a"]
    link = ["qdisc add dev eth0 root handle 2: tbf rate 10mbit burst 16384 latency 200ms"]
    faults = NetnsFaults(
        namespaces=network.namespaces,
        addresses=network.addresses,
        coordinator=network.coordinator,
        links={"a": link},
    )
    tc = ["ip", "netns", "exec", ns, "tc", "qdisc"]
    try:
        # As a slow leaves it (netem itself may be missing from this kernel):
        # another root qdisc in place of the link's.
        tbf = ["tbf", "rate", "1mbit", "burst", "16384", "latency", "50ms"]
        sh(*tc, "replace", "dev", "eth0", "root", *tbf)
        faults.slowed.add("a")
        await faults.heal()
        shown = subprocess.run(
            [*tc, "show", "dev", "eth0"], capture_output=True, text=True, timeout=30
        ).stdout
        assert "tbf 2: root" in shown
        assert "rate 10Mbit" in shown
        assert not faults.slowed
    finally:
        subprocess.run([*tc, "del", "dev", "eth0", "root"], capture_output=True, timeout=30)
