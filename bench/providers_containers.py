"""Container hosts (provider: podman) beside netns hosts: bring-up of 8 and
32 containers from a cached image until every agent has connected, and
the lockstep stage overhead on them. The image is built once
(`phalanx image build --container`, cached by content) before anything
is timed; so is the agent's venv for its Python.

Beside them, interleaved with them: netns hosts (an agent forked by one
fork server each), and the engine alone starting as many containers at
once (`engine alone`: the floor under any bring-up with a container per
host). `(agents)` is the part of podman's bring-up from every container
started to every agent connected: each agent is a Python of its own that
imports its libraries (about 0.3 CPU-seconds a host, read from the
containers' cgroups), all at once on this machine's CPUs.

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
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lockstep import overheads, suite
from bench.providers import Timing, netns, up_and_down

from phalanx.coordinator.runs import RunOptions, run_local
from phalanx.model import PROVIDER_NETNS, PROVIDER_PODMAN, Cluster
from phalanx.providers.base import Provider
from phalanx.providers.containerimage import build
from phalanx.providers.containers import Engine, engine, labels, owner_mark, remove
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


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}/{statistics.median(values):.2f}/{max(values):.2f}"


async def engine_alone(kind: Engine, image: str, count: int) -> float:
    """Seconds for the engine alone to start `count` containers of the
    image, as the provider does (one `run --detach` each, all at once, the
    same options, a shell that only waits inside): the floor under a
    container host's bring-up, whatever phalanx does around it. Labelled
    as a run's, so a killed bench's are swept as a killed run's are."""
    run_id = f"bench-floor-{os.getpid()}"
    marks = labels(run_id, owner_mark())
    names = [f"phx-bench-floor-{os.getpid()}-{i}" for i in range(count)]
    started = time.perf_counter()
    try:
        await asyncio.gather(*(kind.call(
            "run", "--detach", "--name", name, *marks, *kind.run_options(), "--network", "none",
            "--entrypoint", "/bin/sh", image, "-c", "exec sleep 600",
        ) for name in names))  # fmt: skip
        return time.perf_counter() - started
    finally:
        await remove(kind, names)


def rows(hosts: list[int], repeats: int, cases: int) -> str:
    kind = engine()
    image = asyncio.run(build(kind)).tag
    load = os.getloadavg()[0]
    lines = [
        f"container hosts (podman, cached image) beside netns hosts and the engine alone "
        f"starting as many containers; seconds, min/median/max of {repeats}, interleaved",
        f"{'hosts':>5} {'podman up':>16} {'(open)':>6} {'(agents)':>8} {'netns up':>16} "
        f"{'engine alone':>16} {'/netns':>7} {'/engine':>7} {'target':>6} {'vs':>5} "
        f"{'podman down':>12}",
    ]
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as tmp:
        root = Path(tmp)
        # Once unmeasured: the agent's venv for the image's Python.
        asyncio.run(up_and_down(podman(image), 1, root))
        for count in hosts:
            p: list[Timing] = []
            n: list[Timing] = []
            alone: list[float] = []
            # Interleaved: a machine whose load changes weighs on all three alike.
            for _ in range(repeats):
                p.append(asyncio.run(up_and_down(podman(image), count, root)))
                n.append(asyncio.run(up_and_down(netns, count, root)))
                alone.append(asyncio.run(engine_alone(kind, image, count)))
            p_up = statistics.median(t.up for t in p)
            # Of the bring-up, from every container started to every agent connected.
            agents = statistics.median(t.up - t.started for t in p)
            n_up = statistics.median(t.up for t in n)
            target = TARGET_UP_S.get(count)
            versus = f"{p_up / target:.2f}" if target else "-"
            lines.append(
                f"{count:>5} {spread([t.up for t in p]):>16} "
                f"{statistics.median(t.opened for t in p):>6.2f} {agents:>8.2f} "
                f"{spread([t.up for t in n]):>16} {spread(alone):>16} {p_up / n_up:>7.1f} "
                f"{p_up / statistics.median(alone):>7.2f} {target or 0:>6.1f} {versus:>5} "
                f"{spread([t.down for t in p]):>12}"
            )
        lines.append(f"\nlockstep stage overhead, {cases} cases x 3 stages of `true`, median ms")
        lines.append(f"{'hosts':>5} {'podman':>8} {'netns':>8} {'ratio':>6} {'target':>7}")
        for count in hosts[:1]:
            on_podman = stage_overhead(PROVIDER_PODMAN, count, cases, root, image)
            on_netns = stage_overhead(PROVIDER_NETNS, count, cases, root, image)
            lines.append(f"{count:>5} {on_podman:>8.2f} {on_netns:>8.2f} "
                         f"{on_podman / on_netns:>6.2f} {TARGET_OVERHEAD_RATIO:>7.1f}")  # fmt: skip
    lines.append(
        f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
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
