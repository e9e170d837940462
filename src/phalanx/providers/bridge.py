"""Bridges, veth pairs, addresses and queueing disciplines, made with
iproute2 (`ip`, `tc`), for providers whose hosts have network stacks of
their own on one bridge: the netns provider's namespaces today, a VM's tap
tomorrow (`attach` puts any link on a bridge).

Commands go in batches (`ip -batch -`): one process for the links of a
whole cluster instead of one per link, which is most of the time a
bring-up takes.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from phalanx.model import Link

IFNAMSIZ = 15  # the kernel's longest interface name
CALL_TIMEOUT = 60.0  # seconds for one `ip` or `tc` (a batch of a whole cluster included)


class PlumbingError(Exception):
    """An iproute2 command failed; the message carries what it said."""


def tools_missing() -> list[str]:
    """The iproute2 and util-linux programs missing from PATH."""
    return [tool for tool in ("ip", "tc", "unshare") if shutil.which(tool) is None]


async def _call(argv: Sequence[str], stdin: str | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            process.communicate(stdin.encode() if stdin is not None else None), CALL_TIMEOUT
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise PlumbingError(f"{' '.join(argv[:4])}… did not end within {CALL_TIMEOUT:g}s") from None
    if process.returncode != 0:
        said = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
        raise PlumbingError(f"{' '.join(argv[:4])}…: {said}")
    return out.decode(errors="replace")


async def ip(*args: str, netns: str | None = None) -> str:
    return await _call(["ip", *(["-n", netns] if netns else []), *args])


async def ip_batch(lines: Iterable[str], netns: str | None = None, force: bool = False) -> None:
    """`ip -batch`: every line an `ip` command; stops at the first failure
    unless `force` (teardown goes on past what is already gone)."""
    text = "".join(f"{line}\n" for line in lines)
    if not text:
        return
    argv = ["ip", *(["-n", netns] if netns else []), *(["-force"] if force else []), "-batch", "-"]
    await _call(argv, text)


async def tc_batch(lines: Iterable[str], netns: str | None = None) -> None:
    text = "".join(f"{line}\n" for line in lines)
    if text:
        await _call(["tc", *(["-n", netns] if netns else []), "-batch", "-"], text)


async def links() -> dict[str, str]:
    """Every link of this network namespace by name, with its kind
    (bridge, veth, "" for a plain device)."""
    shown = json.loads(await ip("-j", "-d", "link", "show") or "[]")
    return {
        link["ifname"]: link.get("linkinfo", {}).get("info_kind", "")
        for link in shown
        if "ifname" in link
    }


async def namespaces() -> set[str]:
    shown = json.loads(await ip("-j", "netns", "list") or "[]")
    return {ns["name"] for ns in shown}


async def routed() -> list[tuple[ipaddress.IPv4Network, str]]:
    """The IPv4 networks this machine routes (not the default route), each
    with its device."""
    shown = json.loads(await ip("-j", "-4", "route", "show", "table", "all") or "[]")
    taken = []
    for route in shown:
        dst = route.get("dst", "default")
        if dst == "default" or route.get("type") in ("local", "broadcast"):
            continue
        try:
            taken.append((ipaddress.IPv4Network(dst, strict=False), route.get("dev", "")))
        except ValueError:
            continue
    return taken


async def pids_in(netns: str) -> list[int]:
    try:
        out = await ip("netns", "pids", netns)
    except PlumbingError:
        return []
    return [int(word) for word in out.split() if word.isdigit()]


def bridge_mac(name: str) -> str:
    """The MAC address of the bridge `name`: locally administered, fixed
    by its name."""
    digest = hashlib.sha256(name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def bridge_lines(name: str, address: ipaddress.IPv4Interface | None, make: bool) -> list[str]:
    """A bridge up with `address` on it (the coordinator's side of the
    hosts' network). Forwarding starts at once: there is no loop to learn.
    Its MAC address is set: a bridge without one takes its lowest port's,
    so it would change as hosts join while others already talk to it (a
    container plumbed once it runs, a VM's tap), and a host's packets to
    the coordinator were lost for seconds."""
    make_line = f"link add {name} address {bridge_mac(name)} type bridge forward_delay 0"
    lines = [make_line] if make else []
    if address is not None:
        lines.append(f"addr add {address.with_prefixlen} dev {name}")
    lines.append(f"link set {name} up")
    return lines


def attach(link: str, bridge: str) -> str:
    """The batch line that puts a link (a veth's end, a VM's tap) on a bridge, up."""
    return f"link set {link} master {bridge} up"


@dataclass(frozen=True)
class Veth:
    """A veth pair: `outer` on the bridge, `inner` named `interface` in `netns`."""

    outer: str
    netns: str
    interface: str = "eth0"
    mac: str | None = None

    def lines(self, bridge: str) -> list[str]:
        mac = f" address {self.mac}" if self.mac else ""
        return [
            f"link add {self.outer} type veth peer name {self.interface}{mac} netns {self.netns}",
            attach(self.outer, bridge),
        ]

    def inner_lines(self, address: ipaddress.IPv4Interface) -> list[str]:
        """Run inside the namespace: loopback and the interface up, addressed."""
        return [
            "link set lo up",
            f"addr add {address.with_prefixlen} dev {self.interface}",
            f"link set {self.interface} up",
        ]


def needs_netem(link: Link) -> bool:
    return any(v for v in (link.delay, link.jitter, link.loss))


def qdisc_lines(device: str, link: Link) -> list[str]:
    """`tc` lines that give `device`'s outgoing packets the link's
    conditions: netem for delay, jitter and loss, tbf under it for rate."""
    lines = []
    parent = "root"
    if needs_netem(link):
        netem = []
        if link.delay or link.jitter:
            netem.append(f"delay {_ms(link.delay or 0)}")
            if link.jitter:
                netem.append(_ms(link.jitter))
        if link.loss:
            netem.append(f"loss {link.loss:g}%")
        lines.append(f"qdisc add dev {device} root handle 1: netem {' '.join(netem)}")
        parent = "parent 1:"
    if link.rate:
        # A burst of 10 ms at the rate (at least a few full frames) keeps the
        # rate close over any interval a test can measure.
        burst = max(link.rate // 8 // 100, 16 * 1024)
        lines.append(
            f"qdisc add dev {device} {parent} handle 2: tbf rate {link.rate}bit "
            f"burst {burst} latency 200ms"
        )
    return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms"


async def netem_missing() -> bool:
    """Whether this kernel lacks the netem qdisc: asked of a dummy link in
    a namespace of its own, so nothing of the machine's is touched."""
    probe = f"phxprobe-{os.urandom(4).hex()}"
    try:
        await ip("netns", "add", probe)
    except PlumbingError:
        return True
    try:
        await ip_batch(["link add d0 type dummy", "link set d0 up"], netns=probe)
        await tc_batch(["qdisc add dev d0 root netem delay 1ms"], netns=probe)
        return False
    except PlumbingError:
        return True
    finally:
        await ip_batch([f"netns del {probe}"], force=True)
