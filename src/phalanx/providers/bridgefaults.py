"""Network faults between VMs on one bridge (the `qemu` provider).

A VM's network stack is its guest kernel's, out of phalanx's reach while a
stage runs, so the cut is made where its packets cross this machine: the
cluster's bridge. A run's nftables table of the `bridge` family (named for
the run, so a sweep after a crash finds it: `netns.Record.tables`) has one
chain on the forward hook that DROPs frames from one VM's MAC to another's,
so a TCP connect across the cut times out as on a real network. A MAC, not
a tap, names a VM: it stays the same when the VM is live-migrated to its
spare tap. Traffic between a VM and the coordinator (the bridge's own
address) never passes the forward hook: the agents' link is never cut.
Every change rewrites the whole table in one `nft -f` transaction; healing
deletes it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence

from phalanx.providers.base import FaultError
from phalanx.providers.netfaults import Cuts, isolated, partitioned

COMMAND_TIMEOUT = 30.0  # seconds for one nft call


def nft() -> str:
    if (path := shutil.which("nft")) is None:
        raise FaultError(
            "network faults between VMs need nft on this machine (apt-get install nftables)"
        )
    return path


async def remove_table(table: str) -> bool:
    """Delete the run's table if it is there; whether it was."""
    try:
        code, _ = await _nft(f"delete table bridge {table}\n")
    except FaultError:
        return False  # no nft: nothing was ever made with it
    return code == 0


class BridgeFaults:
    """`NetworkFaults` for VMs with taps on one bridge.

    `table`: the run's table name; `macs`: host name → its VM's MAC. As with
    netns hosts, a partition describes the whole network (it replaces the
    cuts before it) and `isolate` adds to them."""

    def __init__(self, *, table: str, macs: Mapping[str, str]) -> None:
        self.table = table
        self.macs = dict(macs)
        self.blocked: Cuts = {name: set() for name in macs}
        self.made = False  # whether the table may exist
        self._lock = asyncio.Lock()  # one change of the network at a time

    async def partition(self, groups: Sequence[Sequence[str]]) -> None:
        blocked = partitioned(self.macs, groups)
        async with self._lock:
            await self._write(blocked)

    async def isolate(self, host: str) -> None:
        async with self._lock:
            await self._write(isolated(self.macs, self.blocked, host))

    async def slow(self, host: str, delay: float) -> None:
        # The qemu provider slows a VM in its guest (guestnet.VmFaults),
        # which uses this class for its cuts only.
        raise FaultError(f"cannot slow {host}: a VM's packets are delayed in its guest")

    async def heal(self) -> None:
        async with self._lock:
            if not self.made:
                return
            code, err = await _nft(f"table bridge {self.table}\ndelete table bridge {self.table}\n")
            if code != 0:
                raise FaultError(f"heal failed: nft: {err.strip()}")
            self.made = False
            self.blocked = {name: set() for name in self.macs}

    async def _write(self, blocked: Cuts) -> None:
        # Declaring the table first makes the delete valid when it is not
        # there yet; the three lines are one transaction.
        rules = "".join(
            f"    ether saddr {self.macs[peer]} ether daddr {self.macs[name]} drop\n"
            for name in sorted(blocked)
            for peer in sorted(blocked[name])
        )
        script = (
            f"table bridge {self.table}\n"
            f"delete table bridge {self.table}\n"
            f"table bridge {self.table} {{\n"
            "  chain cuts {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"{rules}"
            "  }\n"
            "}\n"
        )
        self.made = True  # before: a table half made is still removed by heal
        code, err = await _nft(script)
        if code != 0:
            raise FaultError(f"cannot cut the VMs' network: nft failed: {err.strip()}")
        self.blocked = {name: set(peers) for name, peers in blocked.items()}


async def _nft(script: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        nft(),
        "-f",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(script.encode()), COMMAND_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return 124, f"nft did not finish within {COMMAND_TIMEOUT:g}s"
    return process.returncode or 0, err.decode(errors="replace")
