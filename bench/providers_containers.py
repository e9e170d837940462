"""Container hosts (provider: podman) beside netns hosts: bring-up of 8 and
32 containers from a cached image until every agent has connected, and
the lockstep stage overhead on them. The image is built once
(`phalanx image build --container`, cached by content) before anything
is timed; so is the agent's venv for its Python.

Targets (issue 24): up ≤ 2 s at 8 hosts, ≤ 6 s at 32; the stage overhead
≤ 1.3x that of netns hosts at 8 hosts.

    sudo .venv/bin/python bench/providers_containers.py [--repeats 3] [--cases 50]

`bench/providers.py` calls `rows()`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lockstep import overheads, suite
from bench.providers import netns, up_and_down

from phalanx.coordinator.runs import RunOptions, run_local
from phalanx.model import PROVIDER_NETNS, PROVIDER_PODMAN, Cluster
from phalanx.providers.base import Provider
from phalanx.providers.containerimage import build
from phalanx.providers.containers import engine
from phalanx.providers.podman import PodmanProvider

TARGET_UP_S = {8: 2.0, 32: 6.0}
TARGET_OVERHEAD_RATIO = 1.3


def podman(image: str) -> Callable[[Cluster, Path, str], Provider]:
    def make(c: Cluster, root: Path, run_id: str) -> Provider:
        return PodmanProvider(dataclasses.replace(c, image=image), root, run_id)

    return make


def stage_overhead(provider: str, hosts: int, cases: int, root: Path, image: str) -> float:
    """The median stage overhead in milliseconds."""
    the_suite = suite(hosts, cases)
    the_suite = dataclasses.replace(
        the_suite, cluster=dataclasses.replace(the_suite.cluster, image=image)
    )
    options = RunOptions(results=root, provider_override=provider)
    result, _ = asyncio.run(run_local(the_suite, options))
    if result.status != "passed":
        raise SystemExit(
            f"the suite did not pass on {provider} hosts: {result.status} {result.reason}"
        )
    return statistics.median(overheads(result))


def rows(hosts: list[int], repeats: int, cases: int) -> str:
    image = asyncio.run(build(engine())).tag
    load = os.getloadavg()[0]
    lines = [f"container hosts (podman, cached image) beside netns hosts, median s "
             f"(load average {load:.1f} on {os.cpu_count()} CPUs)"]  # fmt: skip
    lines.append(f"{'hosts':>5} {'podman up':>10} {'(open)':>7} {'netns up':>9} {'target':>7} "
                 f"{'vs target':>9} {'podman down':>12}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as tmp:
        root = Path(tmp)
        # Once unmeasured: the agent's venv for the image's Python.
        asyncio.run(up_and_down(podman(image), 1, root))
        for count in hosts:
            p = [asyncio.run(up_and_down(podman(image), count, root)) for _ in range(repeats)]
            n = [asyncio.run(up_and_down(netns, count, root)) for _ in range(repeats)]
            p_open, p_up, p_down = (statistics.median(x) for x in zip(*p, strict=True))
            n_up = statistics.median(x[1] for x in n)
            target = TARGET_UP_S.get(count)
            versus = f"{p_up / target:.2f}" if target else "-"
            lines.append(f"{count:>5} {p_up:>10.2f} {p_open:>7.2f} {n_up:>9.2f} "
                         f"{target or 0:>7.1f} {versus:>9} {p_down:>12.2f}")  # fmt: skip
        lines.append(f"\nlockstep stage overhead, {cases} cases x 3 stages of `true`, median ms")
        lines.append(f"{'hosts':>5} {'podman':>8} {'netns':>8} {'ratio':>6} {'target':>7}")
        for count in hosts[:1]:
            on_podman = stage_overhead(PROVIDER_PODMAN, count, cases, root, image)
            on_netns = stage_overhead(PROVIDER_NETNS, count, cases, root, image)
            lines.append(f"{count:>5} {on_podman:>8.2f} {on_netns:>8.2f} "
                         f"{on_podman / on_netns:>6.2f} {TARGET_OVERHEAD_RATIO:>7.1f}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--hosts", default="8,32")
    args = parser.parse_args()
    print(rows([int(h) for h in args.hosts.split(",")], args.repeats, args.cases))


if __name__ == "__main__":
    main()
