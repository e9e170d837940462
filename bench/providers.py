"""Providers: what giving hosts a network of their own costs.

- Bring-up and teardown of 8 and 32 netns hosts: `open` (bridge, namespaces,
  veths, addresses, /etc/hosts) and `up` until every agent has connected,
  then `down` and `close`; local hosts beside them, for scale.
- The lockstep stage overhead (wall time of a stage minus its slowest
  host's script, as bench/lockstep.py measures it) on netns hosts next to
  local ones: an agent in a namespace talks to the coordinator over a veth
  and a bridge instead of loopback.
- SSH hosts: bench/providers_ssh.py, when it is there, adds its rows
  (one host brought up with a cold and a warm agent cache).
- Container hosts (provider: podman): bench/providers_containers.py adds
  its rows: 8 and 32 containers up and connected from a cached image, and
  the stage overhead on them beside netns hosts'.

Needs root (netns). Targets: up ≤ 1 s at 8 hosts, ≤ 3 s at 32; the stage
overhead on netns hosts within 1.5x that on local ones.

    sudo .venv/bin/python bench/providers.py [--repeats 3] [--cases 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from phalanx.coordinator.runs import RunOptions, open_coordinator, run_local
from phalanx.layout import new_run_id
from phalanx.model import PROVIDER_LOCAL, PROVIDER_NETNS, Cluster, Host
from phalanx.providers.base import AgentSpec, Provider
from phalanx.providers.local import LocalProvider
from phalanx.providers.netns import NetnsProvider, missing_privileges

sys.path.insert(0, str(Path(__file__).parents[1]))
# bench/lockstep.py: the same suite and the same measure.
from bench.lockstep import overheads, suite

TARGET_UP_S = {8: 1.0, 32: 3.0}
TARGET_OVERHEAD_RATIO = 1.5


def cluster(hosts: int) -> Cluster:
    return Cluster(name="bench", hosts=tuple(Host(name=f"h{i}.bench") for i in range(hosts)))


class Timing(NamedTuple):
    """Seconds from nothing to: the network made (`open`), every host
    started (`up` returned), every agent connected; and back to nothing."""

    opened: float
    started: float
    up: float
    down: float


async def up_and_down(
    make: Callable[[Cluster, Path, str], Provider], hosts: int, root: Path
) -> Timing:
    """Seconds from nothing to every agent connected, and back to nothing."""
    the_cluster = cluster(hosts)
    names = [h.name for h in the_cluster.hosts]
    async with open_coordinator(heartbeat_timeout=30) as coordinator:
        run_id = new_run_id()
        provider = make(the_cluster, root / run_id, run_id)
        started = time.perf_counter()
        try:
            await provider.open()
            opened = time.perf_counter() - started
            async with contextlib.AsyncExitStack() as stack:
                host, port = coordinator.host, coordinator.port
                if provider.listen_address is not None:
                    assert coordinator.also_listen is not None
                    host = provider.listen_address
                    port = await stack.enter_async_context(coordinator.also_listen(host))
                url = f"ws://{host}:{port}/agent"
                tokens = [coordinator.tokens.issue(h.name) for h in the_cluster.hosts]
                await provider.up(
                    [AgentSpec(h, url, t) for h, t in zip(the_cluster.hosts, tokens, strict=True)]
                )
                started_all = time.perf_counter() - started
                missing = await coordinator.hub.wait_connected(names, 60)
                if missing:
                    raise SystemExit(f"agents did not connect: {', '.join(missing)}")
                up = time.perf_counter() - started
                started = time.perf_counter()
                coordinator.hub.shutdown(names)
                await provider.down()
            await provider.close()
            down = time.perf_counter() - started
            coordinator.hub.forget(names)
        finally:
            await provider.close()
    return Timing(opened, started_all, up, down)


def netns(c: Cluster, root: Path, run_id: str) -> Provider:
    return NetnsProvider(c, root, run_id)


def local(c: Cluster, root: Path, run_id: str) -> Provider:
    return LocalProvider(root)


def stage_overhead(provider: str, hosts: int, cases: int, root: Path) -> float:
    """The median stage overhead in milliseconds."""
    options = RunOptions(results=root, provider_override=provider)
    result, _ = asyncio.run(run_local(suite(hosts, cases), options))
    if result.status != "passed":
        raise SystemExit(
            f"the suite did not pass on {provider} hosts: {result.status} {result.reason}"
        )
    return statistics.median(overheads(result))


def ssh_rows() -> None:
    """The SSH provider's measurements (bench/providers_ssh.py): one host
    brought up with a cold and a warm agent cache."""
    module = importlib.import_module("providers_ssh")
    print(module.report(module.ssh_bring_up()))


def container_rows(hosts: str, repeats: int, cases: int) -> None:
    """Container hosts beside netns ones (bench/providers_containers.py);
    a line saying why not where podman cannot run."""
    import shutil

    if shutil.which("podman") is None or shutil.which("mmdebstrap") is None:
        print("container hosts: skipped (needs podman, runc and mmdebstrap)")
        return
    module = importlib.import_module("bench.providers_containers")
    print(module.rows([int(h) for h in hosts.split(",")], repeats, cases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--hosts", default="8,32")
    args = parser.parse_args()
    problem = missing_privileges()
    if problem is not None:
        raise SystemExit(problem)
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as tmp:
        root = Path(tmp)
        print("bring-up (open + up, agents connected) and teardown (down + close), median s")
        print(f"{'hosts':>5} {'netns up':>9} {'(open)':>7} {'local up':>9} {'ratio':>6} "
              f"{'target':>7} {'vs target':>9} {'netns down':>11} {'local down':>11}")  # fmt: skip
        for hosts in (int(h) for h in args.hosts.split(",")):
            n = [asyncio.run(up_and_down(netns, hosts, root)) for _ in range(args.repeats)]
            lo = [asyncio.run(up_and_down(local, hosts, root)) for _ in range(args.repeats)]
            n_open, _, n_up, n_down = (statistics.median(x) for x in zip(*n, strict=True))
            _, _, l_up, l_down = (statistics.median(x) for x in zip(*lo, strict=True))
            target = TARGET_UP_S.get(hosts)
            versus = f"{n_up / target:.2f}" if target else "-"
            print(
                f"{hosts:>5} {n_up:>9.2f} {n_open:>7.2f} {l_up:>9.2f} {n_up / l_up:>6.2f} "
                f"{target or 0:>7.1f} {versus:>9} {n_down:>11.2f} {l_down:>11.2f}"
            )
        print(f"\nlockstep stage overhead, {args.cases} cases x 3 stages of `true`, median ms")
        print(f"{'hosts':>5} {'netns':>8} {'local':>8} {'ratio':>6} {'target':>7}")
        for hosts in (int(h) for h in args.hosts.split(",")):
            on_netns = stage_overhead(PROVIDER_NETNS, hosts, args.cases, root)
            on_local = stage_overhead(PROVIDER_LOCAL, hosts, args.cases, root)
            print(
                f"{hosts:>5} {on_netns:>8.2f} {on_local:>8.2f} {on_netns / on_local:>6.2f} "
                f"{TARGET_OVERHEAD_RATIO:>7.1f}"
            )
        print()
        # --- SSH hosts (bench/providers_ssh.py, the SSH provider's own) ---
        ssh_rows()
        print()
        # --- container hosts (bench/providers_containers.py) ---
        container_rows(args.hosts, args.repeats, args.cases)


if __name__ == "__main__":
    main()
