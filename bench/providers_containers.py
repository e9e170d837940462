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

`--anchor SRC` measures another phalanx's podman provider (SRC: its `src`
folder, e.g. `git archive BASE src | tar -x -C /tmp/base`) beside this
checkout's, round after round: each in a process of its own (the anchor's
with PYTHONPATH=SRC), then netns hosts and the engine alone, with the
CPU-seconds the whole machine spent during each bring-up (/proc/stat: the
engine's processes and the agents, and whatever else ran meanwhile, so
read it beside the load it prints).

`--docker` measures the Docker path beside podman's, round after round:
the same bring-up with Docker's CLI as the engine (`--network none`, each
host's network plumbed into its container once it runs), speaking the
Docker Engine API to a `podman system service` the bench starts (no
Docker engine needed; the Docker CLI must be installed).

`bench/providers.py` calls `rows()`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
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


def podman(image: str, kind: Engine | None = None) -> Callable[[Cluster, Path, str], Provider]:
    def make(c: Cluster, root: Path, run_id: str) -> Provider:
        return PodmanProvider(dataclasses.replace(c, image=image), root, run_id, engine=kind)

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


def docker_rows(hosts: list[int], repeats: int) -> str:
    """Bring-up on podman beside bring-up through Docker's CLI (to podman's
    Docker API service), interleaved."""
    docker = shutil.which("docker")
    if docker is None:
        raise SystemExit("--docker needs Docker's CLI installed")
    from tests.providers.containers import docker_on_podman  # its service, as the tests start it

    kind = engine()
    image = asyncio.run(build(kind)).tag
    load = os.getloadavg()[0]
    lines = [
        f"container hosts up: podman's CLI beside Docker's (to podman's service), interleaved; "
        f"seconds, min/median/max of {repeats}",
        f"{'hosts':>5} {'podman up':>16} {'docker up':>16} {'docker/podman':>13}",
    ]
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as tmp:
        root = Path(tmp)
        with docker_on_podman(root) as env:
            os.environ["DOCKER_HOST"] = env["DOCKER_HOST"]  # for the docker CLI only
            through = Engine(docker, "docker")
            for maker in (podman(image), podman(image, through)):  # once unmeasured
                asyncio.run(up_and_down(maker, 1, root))
            for count in hosts:
                p: list[float] = []
                d: list[float] = []
                for _ in range(repeats):
                    p.append(asyncio.run(up_and_down(podman(image), count, root)).up)
                    d.append(asyncio.run(up_and_down(podman(image, through), count, root)).up)
                ratio = statistics.median(d) / statistics.median(p)
                lines.append(f"{count:>5} {spread(p):>16} {spread(d):>16} {ratio:>13.2f}")
    lines.append(
        f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    return "\n".join(lines)


def machine_cpu() -> float:
    """CPU-seconds this machine has spent busy since it booted (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def one(count: int, image: str, root: Path) -> dict[str, float]:
    """One podman bring-up and teardown (of whichever phalanx this process
    imports), with the machine's CPU-seconds during the bring-up."""
    before = machine_cpu()
    timing = asyncio.run(up_and_down(podman(image), count, root))
    cpu = machine_cpu() - before
    return {**timing._asdict(), "cpu": cpu}


def _measured(src: Path | None, count: int, image: str, root: Path) -> dict[str, float]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, __file__, "--one", str(count), "--image", image, "--root", str(root)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"a bring-up failed ({src or 'this checkout'}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def anchored(anchor: Path, hosts: list[int], repeats: int) -> str:
    kind = engine()
    image = asyncio.run(build(kind)).tag
    load = os.getloadavg()[0]
    lines = [
        f"podman up, this checkout (head) beside the anchor {anchor} (base), interleaved; "
        f"seconds min/median/max of {repeats}; cpu: the machine's CPU-seconds during the "
        "bring-up, median",
        f"{'hosts':>5} {'head up':>16} {'base up':>16} {'head/base':>9} {'head cpu':>8} "
        f"{'base cpu':>8} {'netns up':>16} {'engine alone':>16} {'head/eng':>8} {'target':>6}",
    ]
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as tmp:
        root = Path(tmp)
        for src in (None, anchor):  # once unmeasured: each one's agent venv
            _measured(src, 1, image, root)
        for count in hosts:
            head: list[dict[str, float]] = []
            base: list[dict[str, float]] = []
            n: list[float] = []
            alone: list[float] = []
            for _ in range(repeats):
                head.append(_measured(None, count, image, root))
                base.append(_measured(anchor, count, image, root))
                n.append(asyncio.run(up_and_down(netns, count, root)).up)
                alone.append(asyncio.run(engine_alone(kind, image, count)))
            h_up, b_up = [t["up"] for t in head], [t["up"] for t in base]
            lines.append(
                f"{count:>5} {spread(h_up):>16} {spread(b_up):>16} "
                f"{statistics.median(h_up) / statistics.median(b_up):>9.2f} "
                f"{statistics.median(t['cpu'] for t in head):>8.2f} "
                f"{statistics.median(t['cpu'] for t in base):>8.2f} "
                f"{spread(n):>16} {spread(alone):>16} "
                f"{statistics.median(h_up) / statistics.median(alone):>8.2f} "
                f"{TARGET_UP_S.get(count, 0):>6.1f}"
            )
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
    parser.add_argument("--anchor", type=Path, help="another phalanx's src folder, measured beside")
    parser.add_argument("--docker", action="store_true", help="podman beside Docker's CLI")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    hosts = [int(h) for h in args.hosts.split(",")]
    if args.one is not None:
        print(json.dumps(one(args.one, args.image, args.root)))
    elif args.docker:
        print(docker_rows(hosts, args.repeats))
    elif args.anchor is not None:
        print(anchored(args.anchor.resolve(), hosts, args.repeats))
    else:
        print(rows(hosts, args.repeats, args.cases))


if __name__ == "__main__":
    main()
