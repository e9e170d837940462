"""A VM's link conditions and `slow`, made by the guest's own kernel.

This machine's kernel may lack `sch_netem` (the netns provider then says
so), but a VM runs the Debian kernel whose modules phalanx loads in its
initramfs (`MODULES`), so netem is always there. The conditions are those
of the netns provider, in the same directions:

- `link:` (delay, jitter, loss, rate) on the host's outgoing packets (a
  netem root on the guest's eth0, tbf under it for rate), and on its
  incoming ones: the netns provider puts the same qdiscs on the bridge end
  of the host's veth; a guest has no such end it owns, so eth0's ingress is
  redirected to an `ifb0` carrying them. Both lists are made by
  `bridge.qdisc_lines`, the netns provider's own.
- `slow H D` replaces the outgoing conditions (eth0's root) with a netem
  delay of D, as on a netns host; heal puts the link's back.

The guest applies its link at boot, before its agent starts (so a `revert:
case` snapshot holds them), from two `tc -batch` files on its seed. At run
time the provider reaches it on a virtio-serial port (`phalanx.net`, a unix
socket here) read by a small loop in the guest (`NETCTL`). The loop takes a
fixed vocabulary only, each line `ID VERB [ARG]`, letters, digits, dots and
spaces, and answers `ID done` or `ID error TEXT` (`- error ...` when the
line itself is refused): `ID slow MILLISECONDS`, `ID heal`. No text from
this side is ever run as a command. The provider resends a request it has
no answer to (the guest may be between two reads of its port, restored
from a snapshot, or migrated to a new QEMU whose socket replaced the old
one); both verbs can be repeated safely, and an answer to another id is
ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Protocol

from phalanx.model import Link
from phalanx.providers import bridge
from phalanx.providers.base import FaultError
from phalanx.providers.netfaults import known

PORT = "phalanx.net"
CHARDEV = "phalanx-net"  # its QEMU chardev's id
INTERFACE = "eth0"
IFB = "ifb0"
EGRESS = "link.tc"  # seed file: eth0's outgoing conditions, `tc -batch`
INGRESS = "link-in.tc"  # seed file: eth0's ingress through ifb0
# What the guest's kernel must load for them (all modules in Debian's).
MODULES = ("sch_netem", "sch_tbf", "sch_ingress", "cls_matchall", "act_mirred", "ifb")
ASK_TIMEOUT = 60.0  # seconds for one request, resends included
RESEND_AFTER = 3.0  # seconds without an answer before the request goes again
MAX_LINE = 64


def seed_files(link: Link | None) -> dict[str, str]:
    """The `tc -batch` files a VM's seed carries for its link conditions
    (none when it has none)."""
    if link is None:
        return {}
    egress = bridge.qdisc_lines(INTERFACE, link)
    if not egress:
        return {}
    ingress = [
        f"qdisc add dev {INTERFACE} handle ffff: ingress",
        f"filter add dev {INTERFACE} parent ffff: matchall action mirred egress redirect dev {IFB}",
        *bridge.qdisc_lines(IFB, link),
    ]
    return {EGRESS: "\n".join(egress) + "\n", INGRESS: "\n".join(ingress) + "\n"}


def port_args(socket: Path) -> list[str]:
    """The `phalanx.net` port, on a virtio-serial bus of its own."""
    return [
        "-device", "virtio-serial-pci,id=phalanx-net-vser",
        "-chardev", f"socket,id={CHARDEV},path={socket},server=on,wait=off",
        "-device", f"virtserialport,bus=phalanx-net-vser.0,chardev={CHARDEV},name={PORT}",
    ]  # fmt: skip


# --- the vocabulary --------------------------------------------------------------


def slow_request(delay: float) -> str:
    if not delay >= 0 or delay > 3600:
        raise FaultError(f"cannot delay packets by {delay:g}s")
    return f"slow {delay * 1000:.3f}"


HEAL = "heal"
_ANSWER = re.compile(r"(\d+|-) (done|error)(?: (.*))?")


def parse_answer(line: str) -> tuple[str, str | None] | None:
    """(request id or "-", None when done else the error), or None: not an
    answer."""
    match = _ANSWER.fullmatch(line.strip())
    if match is None:
        return None
    return match[1], (match[3] or "failed") if match[2] == "error" else None


# The guest's side, run by `GUESTNET` on the port (stdin and stdout are
# the port). Every line is checked before anything runs; the millisecond
# count is the only word passed on, and only digits and one dot reach tc.
# tc by its path: busybox's sh would run its own applet, which has no netem.
NETCTL = r"""bb=/run/phalanx/busybox
dir=/run/phalanx
tc=${PHALANX_TC:-/usr/sbin/tc}
set -f
restore() {
    $tc qdisc del dev eth0 root 2>/dev/null
    [ -s "$dir/link.tc" ] || return 0
    $tc -batch "$dir/link.tc" 2>&1
}
while read -r line; do
    case "$line" in
    "" | *[!0-9a-z.\ ]*) echo "- error refused: not a phalanx.net request"; continue ;;
    esac
    if [ ${#line} -gt 64 ]; then echo "- error refused: too long"; continue; fi
    set -- $line
    id=$1
    case "$id" in
    "" | *[!0-9]*) echo "- error refused: no request id"; continue ;;
    esac
    case "$#:$2" in
    2:heal)
        if out=$(restore); then echo "$id done"; else echo "$id error heal: "$out; fi
        ;;
    3:slow)
        case "$3" in
        *[!0-9.]* | *.*.* | .* | *.) echo "$id error refused: not a delay: $3"; continue ;;
        esac
        if out=$($tc qdisc replace dev eth0 root netem delay "$3ms" 2>&1); then
            echo "$id done"
        else
            echo "$id error tc: "$out
        fi
        ;;
    *) echo "$id error refused: unknown request" ;;
    esac
done
"""

# Run by the guest's stage2 before its agent starts: the link conditions
# from the seed, then the port's loop, detached (not a job of stage2's,
# whose `wait` is for its agent) and reopened whenever the port reads its
# end (nothing connected on this side yet, or a new QEMU after migration).
GUESTNET = r"""bb=/run/phalanx/busybox
dir=/run/phalanx
tc=/usr/sbin/tc
if [ -s "$dir/link.tc" ]; then
    $bb ip link set ifb0 up
    if $tc -batch "$dir/link.tc" && $tc -batch "$dir/link-in.tc"; then
        echo "phalanx-vm: link conditions applied"
    else
        echo "phalanx-vm: link conditions NOT applied"
    fi
fi
port=
for p in /sys/class/virtio-ports/*; do
    [ "$($bb cat "$p/name" 2>/dev/null)" = phalanx.net ] && port=/dev/${p##*/}
done
if [ -n "$port" ]; then
    (
        while :; do
            $bb sh "$dir/netctl" <>"$port" >&0 2>/dev/null
            $bb sleep 1
        done &
    )
fi
"""


# --- this side ---------------------------------------------------------------------


class GuestChannel:
    """Requests to one VM's `phalanx.net` port (its unix socket here)."""

    def __init__(self, host: str, socket: Path) -> None:
        self.host = host
        self.socket = socket
        self.next_id = random.randrange(1, 10**6)  # not reused across a restore
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def ask(self, request: str, timeout: float = ASK_TIMEOUT) -> None:
        """Send `request` until the guest answers it; FaultError with the
        guest's error, or when it does not answer within `timeout`."""
        async with self._lock:
            self.next_id += 1
            rid = str(self.next_id)
            line = f"{rid} {request}\n".encode()
            deadline = time.monotonic() + timeout
            problem = "no answer"
            while time.monotonic() < deadline:
                try:
                    reader, writer = await self._connect()
                    writer.write(line)
                    await writer.drain()
                    wait = min(RESEND_AFTER, max(deadline - time.monotonic(), 0.1))
                    answered = await asyncio.wait_for(self._answer(reader, rid), wait)
                except TimeoutError:
                    continue  # resent
                except (OSError, EOFError) as exc:
                    problem = f"its port: {exc}"
                    self.close()
                    await asyncio.sleep(0.2)
                    continue
                if answered is not None:
                    raise FaultError(f"{self.host}: {answered}")
                return
            raise FaultError(
                f"{self.host}: the guest did not answer {request!r} within {timeout:g}s ({problem})"
            )

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            self._streams = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.socket)), 10
            )
        return self._streams

    async def _answer(self, reader: asyncio.StreamReader, rid: str) -> str | None:
        while True:
            raw = await reader.readline()
            if not raw.endswith(b"\n"):
                raise EOFError("closed")
            parsed = parse_answer(raw.decode(errors="replace"))
            if parsed is not None and parsed[0] == rid:
                return parsed[1]

    def retarget(self, socket: Path) -> None:
        """The VM's port is now at `socket` (a new QEMU, after a migration)."""
        self.socket = socket
        self.close()

    def close(self) -> None:
        """Drop the connection (the next request makes a new one)."""
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()


class Cuts(Protocol):
    """What cuts the VMs' network (`bridgefaults.BridgeFaults`)."""

    async def partition(self, groups: Sequence[Sequence[str]]) -> None: ...

    async def isolate(self, host: str) -> None: ...

    async def heal(self) -> None: ...


class VmFaults:
    """`NetworkFaults` for VMs on a bridge: cuts where their frames cross
    this machine (`cuts`, bridgefaults), `slow` in the guest. `channels`:
    a host's channel, or None when it has none (a boot image's VM);
    `hosts`: the cluster's host names."""

    def __init__(
        self,
        cuts: Cuts,
        channels: Callable[[str], GuestChannel | None],
        hosts: Sequence[str],
    ) -> None:
        self.cuts = cuts
        self.channels = channels
        self.hosts = list(hosts)
        self.slowed: set[str] = set()
        self.lock = asyncio.Lock()  # a guest request, or a restore of the guests

    async def partition(self, groups: Sequence[Sequence[str]]) -> None:
        await self.cuts.partition(groups)

    async def isolate(self, host: str) -> None:
        await self.cuts.isolate(host)

    async def slow(self, host: str, delay: float) -> None:
        (name,) = known(self.hosts, [host])
        request = slow_request(delay)
        channel = self.channels(name)
        if channel is None:
            raise FaultError(
                f"cannot slow {name}: its VM is not running, or boots its own image "
                "(which has no phalanx.net port)"
            )
        async with self.lock:
            self.slowed.add(name)  # before: a half-made delay is healed too
            try:
                await channel.ask(request)
            except FaultError as exc:
                raise FaultError(f"cannot slow {exc}") from None

    async def heal(self) -> None:
        problems = []
        try:
            await self.cuts.heal()
        except FaultError as exc:
            problems.append(str(exc))
        async with self.lock:
            for name in sorted(self.slowed):
                channel = self.channels(name)
                try:
                    if channel is not None:
                        await channel.ask(HEAL)
                except FaultError as exc:
                    problems.append(f"heal failed: {exc}")
                else:
                    self.slowed.discard(name)
        if problems:
            raise FaultError("; ".join(problems))

    @contextlib.asynccontextmanager
    async def restoring(self) -> AsyncIterator[None]:
        """Around a `loadvm` of the guests: no request is under way, and
        after it every guest has the link conditions it booted with (the
        snapshot was taken after they were applied), nothing slowed."""
        async with self.lock:
            yield
            self.slowed.clear()
