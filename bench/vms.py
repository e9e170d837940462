"""VMs of the qemu provider: how long from QEMU's start to a connected agent.

For each cluster size (1 and 4 VMs by default), the provider boots the tiny
image (`phalanx image build`, built first if missing) under KVM when it
works here, else TCG, against a real coordinator: the time until every
guest started its agent (`up` returns), until every agent is connected,
and until every VM is powered off again (the agents shut down, the guests
power off; `down`).

Targets (issue 14): <= 6 s boot-to-agent for the tiny image under TCG on a
2-core machine. Anchor: avocado-virt's boot test took ~7.5 s under KVM.
Still to measure here: live migration of an idle 256 MB guest, stage
overhead inside VMs next to netns hosts (no migration, no bridge yet).

    .venv/bin/python bench/vms.py [--vms 1,4] [--ram 256M]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from phalanx.coordinator.runs import open_coordinator
from phalanx.model import Host
from phalanx.providers.base import AgentSpec
from phalanx.providers.qemu import QemuProvider


async def measure(count: int, ram: str, root: Path) -> dict[str, object]:
    hosts = [Host(name=f"vm{i}.bench.test", ram_size=ram) for i in range(count)]
    provider = QemuProvider(root / f"n{count}", f"bench-{count}")
    await provider.open()
    try:
        async with open_coordinator(heartbeat_timeout=30) as coordinator:
            specs = [
                AgentSpec(h, coordinator.agent_url, coordinator.tokens.issue(h.name)) for h in hosts
            ]
            started = time.monotonic()
            await provider.up(specs)
            booted = time.monotonic() - started
            missing = await coordinator.hub.wait_connected([h.name for h in hosts], 600)
            connected = time.monotonic() - started
            coordinator.hub.shutdown(h.name for h in hosts)
            stopping = time.monotonic()
            await provider.down()
            stopped = time.monotonic() - stopping
    finally:
        await provider.close()
    return {
        "vms": count,
        "accel": provider.accel,
        "ram": ram,
        "agents_started_s": round(booted, 2),
        "agents_connected_s": round(connected, 2),
        "missing": missing,
        "powered_off_s": round(stopped, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", default="1,4", help="cluster sizes (default: %(default)s)")
    parser.add_argument("--ram", default="256M", help="each VM's RAM (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-vms-") as tmp:
        for count in (int(n) for n in args.vms.split(",")):
            print(json.dumps(await measure(count, args.ram, Path(tmp))), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
