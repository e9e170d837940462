"""VMs of the qemu provider: how long from QEMU's start to a connected agent.

For each cluster size (1 and 4 VMs by default), root (this machine's
over 9p, or a root disk) and way to boot (cold; or, on a root disk,
restored from a saved template: providers/vmtemplate.py), the provider
boots the tiny image (`phalanx image build`, built first if missing) under
KVM when it works here, else TCG, against a real coordinator: the time
until every guest started its agent (`up` returns), until every agent is
connected, and until every VM is powered off again (the agents shut down,
the guests power off; `down`). The template is built (or found in the
cache) by a first, unreported boot; how long a build took is printed.

Then live migration of an idle guest (one VM on its root disk, its agent
connected, `--migrations` times over TCP and over a unix socket to a new
QEMU on this machine): the wall time of `Machine.migrate` (the clone's
start, the transfer, the source's end) and QEMU's own downtime.

Targets (issue 14): <= 6 s boot-to-agent-connected for the tiny image under
TCG on a 2-core machine (the table's ratio: connected / 6 s); <= 1 s live migration of an idle 256 MB guest. Anchors:
avocado-virt's boot test took ~7.5 s under KVM; a migration by hand with
QEMU 7.2 took 0.6 s.

Then live migration of the same idle guest to another hypervisor
(`--cross-migrations` times, a fresh VM each: one that came in does not
move again): two hypervisors in this process, the VM booted on the first
and moved to the second (`phalanx-vm migrate --to`: its root disk's
overlay and any user disk mirrored over NBD, then RAM), the wall time of
the whole request and of the source's part, and QEMU's downtime; reported
as a ratio to the same-machine TCP migration's median.

Last, the lockstep stage overhead (a stage's wall time minus its slowest
host's, bench/lockstep.py's suite and measure: cases of three `true`
stages) on VMs next to the same suite on netns hosts, in one run; their
ratio says what a VM's virtual network and CPU add to a barrier.

    .venv/bin/python bench/vms.py [--vms 1,4] [--root host,disk] [--boot cold,template]
                                  [--ram 256M] [--migrations 5] [--cross-migrations 3]
                                  [--overhead-hosts 2] [--cases 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from phalanx.coordinator.app import AGENT_PATH
from phalanx.coordinator.runs import RunOptions, open_coordinator, run_local
from phalanx.model import PROVIDER_NETNS, PROVIDER_QEMU, Cluster, Host
from phalanx.providers import vmtemplate
from phalanx.providers.base import AgentSpec
from phalanx.providers.qemu import QemuProvider

sys.path.insert(0, str(Path(__file__).parents[1]))
# bench/lockstep.py: the same suite and the same measure as every overhead here.
from bench.lockstep import overheads, suite

TARGET_BOOT_S = 6.0


async def measure(
    count: int, ram: str, root: Path, vm_root: str, boot: str = "cold"
) -> dict[str, object]:
    """One cluster booted, connected and powered off; `boot`: cold, or
    from a template (vm_root disk only)."""
    os.environ[vmtemplate.ENV] = "1" if boot == "template" else "0"
    hosts = [Host(name=f"vm{i}.bench.test", ram_size=ram) for i in range(count)]
    folder = root / f"n{count}-{vm_root}-{boot}"
    provider = QemuProvider(folder, f"bench-{count}", vm_root=vm_root)
    await provider.open()
    try:
        async with open_coordinator(heartbeat_timeout=30) as coordinator:
            specs = [
                AgentSpec(h, coordinator.agent_url, coordinator.tokens.issue(h.name)) for h in hosts
            ]
            started = time.monotonic()
            await provider.up(specs)
            booted = time.monotonic() - started
            boots = sorted({vm.boot for vm in provider.vms.values()})
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
        "root": vm_root,
        "boot": ",".join(boots),
        "accel": provider.accel,
        "ram": ram,
        "agents_started_s": round(booted, 2),
        "agents_connected_s": round(connected, 2),
        "missing": missing,
        "powered_off_s": round(stopped, 2),
    }


TARGET_MIGRATION_S = 1.0
ANCHOR_MIGRATION_S = 0.6  # QEMU 7.2 by hand


async def measure_migration(ram: str, root: Path, times: int) -> dict[str, object]:
    host = Host(name="idle.bench.test", ram_size=ram)
    cluster = Cluster(name="idle", hosts=(host,), provider="qemu", vm_root="disk")
    run_id = f"bench-migrate-{uuid.uuid4().hex[:6]}"
    provider = QemuProvider(root / "migrate", run_id, cluster=cluster)
    await provider.open()
    seconds: dict[str, list[float]] = {"tcp": [], "unix": []}
    network = "user"
    try:
        async with contextlib.AsyncExitStack() as stack:
            coordinator = await stack.enter_async_context(open_coordinator(heartbeat_timeout=30))
            url = coordinator.agent_url
            address = provider.listen_address
            if address is not None and coordinator.also_listen is not None:  # on the bridge
                port = await stack.enter_async_context(coordinator.also_listen(address))
                url = f"ws://{address}:{port}{AGENT_PATH}"
            await provider.up([AgentSpec(host, url, coordinator.tokens.issue(host.name))])
            missing = await coordinator.hub.wait_connected([host.name], 600)
            network = "bridge" if provider.network is not None else "user"
            for _ in range(times):
                for mode in seconds:
                    seconds[mode].append(await provider.migrate(host.name, mode))
            migrations = provider.vms[host.name].machine.migrations
            coordinator.hub.shutdown([host.name])
            await provider.down()
    finally:
        await provider.close()
    downtime = [m["downtime_ms"] for m in migrations if m["downtime_ms"] is not None]
    return {
        "ram": ram,
        "accel": provider.accel,
        "network": network,
        **{f"{mode}_median_s": round(statistics.median(s), 3) for mode, s in seconds.items()},
        **{f"{mode}_max_s": round(max(s), 3) for mode, s in seconds.items()},
        "downtime_median_ms": statistics.median(downtime) if downtime else None,
        "migrations": len(migrations),
        "missing": missing,
    }


async def measure_cross_migration(ram: str, root: Path, times: int) -> dict[str, object]:
    """An idle guest moved from one hypervisor to another, `times` times
    (a fresh VM each): the request's wall time, the source's part of it
    (mirror, RAM, switch-over, the source's end) and QEMU's downtime."""
    from phalanx.hypervisor.core import Hypervisor
    from phalanx.providers.remote import HypervisorProvider

    host = Host(name="moving.bench.test", ram_size=ram)
    cluster = Cluster(name="moving", hosts=(host,), provider="qemu", vm_root="disk")
    hv1, hv2 = Hypervisor("hv1", root / "hv1"), Hypervisor("hv2", root / "hv2")
    wall: list[float] = []
    sent: list[float] = []
    mirrored: list[float] = []
    downtime: list[float] = []
    async with open_coordinator(heartbeat_timeout=30) as coordinator:
        for _ in range(times):
            run_id = f"bench-xmig-{uuid.uuid4().hex[:6]}"
            provider = HypervisorProvider(
                hv1, cluster, run_id, run_id, folder=root / run_id, resolve=lambda to, h: hv2
            )
            await provider.open()
            try:
                async with contextlib.AsyncExitStack() as stack:
                    url = coordinator.agent_url
                    address = provider.listen_address
                    if address is not None and coordinator.also_listen is not None:
                        port = await stack.enter_async_context(coordinator.also_listen(address))
                        url = f"ws://{address}:{port}{AGENT_PATH}"
                    token = coordinator.tokens.issue(host.name)
                    await provider.up([AgentSpec(host, url, token)])
                    if await coordinator.hub.wait_connected([host.name], 600):
                        raise SystemExit("the VM's agent did not connect")
                    began = time.monotonic()
                    await provider.migrate_vm(host.name, to="hv2", timeout=300)
                    wall.append(time.monotonic() - began)
                    arrival = hv2.moves.arrivals[run_id][host.name]
                    record = arrival.machine.migrations[-1]
                    sent.append(float(record["seconds"]))
                    mirrored.append(float(record["mirror_s"]))
                    if record["downtime_ms"] is not None:
                        downtime.append(float(record["downtime_ms"]))
                    coordinator.hub.shutdown([host.name])
                    await provider.down()
                    coordinator.hub.forget([host.name])
                    coordinator.tokens.revoke(token)
            finally:
                await provider.close()
    return {
        "ram": ram,
        "to": "another hypervisor",
        "migrations": len(wall),
        "wall_median_s": round(statistics.median(wall), 3),
        "wall_max_s": round(max(wall), 3),
        "send_median_s": round(statistics.median(sent), 3),
        "mirror_median_s": round(statistics.median(mirrored), 3),
        "downtime_median_ms": statistics.median(downtime) if downtime else None,
    }


def print_cross(row: dict[str, object], same_tcp_s: float | None) -> None:
    wall = float(row["wall_median_s"])  # type: ignore[arg-type]
    send = float(row["send_median_s"])  # type: ignore[arg-type]
    print(
        f"live migration of an idle {row['ram']} guest to another hypervisor, median s "
        "(ratio: to the same-machine TCP migration's median)"
    )
    print(f"{'request':>8} {'source':>7} {'mirror':>7} {'downtime':>9} {'ratio':>6}")
    ratio = f"{wall / same_tcp_s:>6.2f}" if same_tcp_s else f"{'-':>6}"
    print(
        f"{wall:>8.3f} {send:>7.3f} {row['mirror_median_s']!s:>7} "
        f"{row['downtime_median_ms']!s:>7}ms {ratio}"
    )


async def stage_overhead(provider: str, hosts: int, cases: int, root: Path) -> float:
    """The median stage overhead in milliseconds, on `provider`'s hosts."""
    options = RunOptions(results=root, provider_override=provider, connect_timeout=600)
    result, _ = await run_local(suite(hosts, cases), options)
    if result.status != "passed":
        raise SystemExit(f"the suite did not pass on {provider} hosts: {result.reason}")
    return statistics.median(overheads(result))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", default="1,4", help="cluster sizes (default: %(default)s)")
    parser.add_argument("--ram", default="256M", help="each VM's RAM (default: %(default)s)")
    parser.add_argument("--root", default="host,disk", help="the VMs' roots (default: %(default)s)")
    parser.add_argument(
        "--boot", default="cold,template", help="how they boot (default: %(default)s)"
    )
    parser.add_argument(
        "--migrations", type=int, default=5, help="migrations per mode (default: %(default)s)"
    )
    parser.add_argument(
        "--cross-migrations",
        type=int,
        default=3,
        help="migrations to another hypervisor, a fresh VM each (default: %(default)s)",
    )
    parser.add_argument(
        "--overhead-hosts", type=int, default=2, help="hosts in the overhead suite (0: skip it)"
    )
    parser.add_argument("--cases", type=int, default=20, help="its cases (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-vms-") as tmp:
        rows = []
        for vm_root in args.root.split(","):
            for boot in args.boot.split(","):
                if boot == "template" and vm_root != "disk":
                    continue  # QEMU cannot save a VM with this machine's root over 9p
                if boot == "template":  # built (or found) first: not what is measured
                    began = time.monotonic()
                    await measure(1, args.ram, Path(tmp) / "warm", vm_root, boot)
                    print(f"template ready in {time.monotonic() - began:.1f}s", flush=True)
                for count in (int(n) for n in args.vms.split(",") if n):
                    row = await measure(count, args.ram, Path(tmp), vm_root, boot)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        print(
            f"boot to agents connected, s (target <= {TARGET_BOOT_S:g} s; ratio = connected / target)"
        )
        print(f"{'root':>5} {'vms':>4} {'boot':>9} {'started':>8} {'connected':>10} {'ratio':>6}")
        for row in rows:
            connected = float(row["agents_connected_s"])  # type: ignore[arg-type]
            print(
                f"{row['root']:>5} {row['vms']:>4} {row['boot']:>9} {row['agents_started_s']:>8} "
                f"{connected:>10} {connected / TARGET_BOOT_S:>6.2f}"
            )
        same_tcp_s: float | None = None
        if args.migrations > 0:
            row = await measure_migration(args.ram, Path(tmp), args.migrations)
            same_tcp_s = float(row["tcp_median_s"])  # type: ignore[arg-type]
            print(json.dumps(row), flush=True)
            print(
                f"live migration of an idle {args.ram} guest, median s (target <= "
                f"{TARGET_MIGRATION_S:g} s, anchor {ANCHOR_MIGRATION_S:g} s by hand)"
            )
            print(f"{'mode':>5} {'median':>7} {'max':>6} {'vs target':>9} {'vs anchor':>9}")
            for mode in ("tcp", "unix"):
                median = float(row[f"{mode}_median_s"])  # type: ignore[arg-type]
                print(
                    f"{mode:>5} {median:>7.3f} {row[f'{mode}_max_s']:>6} "
                    f"{median / TARGET_MIGRATION_S:>9.2f} {median / ANCHOR_MIGRATION_S:>9.2f}"
                )
        if args.cross_migrations > 0:
            cross = await measure_cross_migration(args.ram, Path(tmp), args.cross_migrations)
            print(json.dumps(cross), flush=True)
            print_cross(cross, same_tcp_s)

        if args.overhead_hosts > 0:
            hosts = args.overhead_hosts
            on_vms = await stage_overhead(PROVIDER_QEMU, hosts, args.cases, Path(tmp))
            on_netns = await stage_overhead(PROVIDER_NETNS, hosts, args.cases, Path(tmp))
            print(
                f"lockstep stage overhead, {hosts} hosts, {args.cases} cases x 3 stages of "
                "`true`, median ms"
            )
            print(f"{'VMs':>8} {'netns':>8} {'ratio':>6}")
            print(f"{on_vms:>8.2f} {on_netns:>8.2f} {on_vms / on_netns:>6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
