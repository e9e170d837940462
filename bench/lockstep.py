"""Lockstep: what a user pays per stage, against the floor of spawning the scripts.

A suite of M cases (50 by default), each with an initialize, a run and a
finalize stage whose scripts are `#!/bin/sh` + `true`, runs on N local
hosts (8 and 32 by default) through `phalanx run`, as a user runs it. The
same suite runs with one case selected (`-t c0`). The user-visible cost of
a stage is

    (wall of the M-case run - wall of the 1-case run) / (3M - 3)

walls taken around the `phalanx run` process, start to exit: nothing
subtracted, each host's script time included.

The floor: this process spawns the same N script files at once
(posix_spawn, as the agents do) and waits for all of them, once per extra stage (the same number of rounds), in the
same bench run, interleaved with the phalanx runs so that both see the same
load. Its per-stage figure is a round's wall.

The tail: per-stage samples of the M-case runs are the gaps between
consecutive stage starts in the run's results.json (`started_at` of each
stage, in run order): all a stage costs a user, the barrier and what the
engine does between two stages included. p99 is over those samples of
every repetition, against the floor's median round.

Also the CPU time (user + system) per extra stage of `phalanx run` and
everything under it (its agents, the scripts), against the CPU time of the
floor's rounds (this process and its scripts): on a busy machine walls move
with the load, CPU time much less, and on a quiet 2-core machine the wall
ratio follows it.

Targets: median <= 1.5x the floor, p99 <= 2.5x the floor, at 8 and 32 hosts.

phalanx runs as installed (without PYTHONDONTWRITEBYTECODE, after one
untimed run). `--compare SRC` also runs phalanx from another checkout's
`src` folder (`git archive BASE src | tar -x -C /tmp/base`, then
`--compare /tmp/base/src`) in the same repetitions, interleaved, and prints
this checkout's ratio to it.

    .venv/bin/python bench/lockstep.py [--cases 50] [--hosts 8,32] [--repeats 5] [--compare SRC]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from bench.machine import installed_env

from phalanx.model import Case, Cluster, Host, RunResult, Script, Suite

SCRIPT = "#!/bin/sh\ntrue\n"
STAGES = ("initialize", "run", "finalize")
TARGET_MEDIAN = 1.5  # x the floor
TARGET_P99 = 2.5  # x the floor


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}"


def spread(values: list[float]) -> str:
    return f"{min(values):7.2f} {statistics.median(values):7.2f} {max(values):7.2f}"


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def make_repo(root: Path, hosts: int, cases: int) -> Path:
    """A definitions repo with one cluster of `hosts` hosts and one suite of
    `cases` cases; the suite's folder."""
    repo = root / f"repo-{hosts}"
    (repo / "clusters").mkdir(parents=True)
    names = "".join(f"  - name: h{i}.bench\n" for i in range(hosts))
    (repo / "clusters" / "bench.yaml").write_text(f"name: bench\nhosts:\n{names}")
    suite = repo / "test-suites" / "bench"
    tests = ", ".join(f"c{i}" for i in range(cases))
    suite.mkdir(parents=True)
    (suite / "suite.yaml").write_text(f"name: bench\ncluster: bench\ntests: [{tests}]\n")
    for i in range(cases):
        case = suite / "tc" / f"c{i}"
        case.mkdir(parents=True)
        (case / "init.sh").write_text(SCRIPT)
        (case / "run.sh").write_text(SCRIPT)
        (case / "finalize.sh").write_text(SCRIPT)
    return suite


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def phalanx_run(
    suite: Path, results: Path, env: dict[str, str], *select: str
) -> tuple[float, float, Path]:
    """Wall seconds of one `phalanx run`, start to exit, the CPU seconds of
    it and everything under it (agents, scripts), and its results.json."""
    results.mkdir(parents=True)
    command = [sys.executable, "-m", "phalanx", "run", str(suite), "--plain",
               "--results", str(results), *select]  # fmt: skip
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=False, timeout=600, env=env)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    if done.returncode != 0:
        raise SystemExit(f"phalanx run failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    found = sorted(results.glob("**/results.json"))
    if len(found) != 1:
        raise SystemExit(f"expected one results.json under {results}, found {len(found)}")
    return wall, cpu, found[0]


def stage_gaps(results_json: Path) -> list[float]:
    """Milliseconds between consecutive stage starts, in run order."""
    run = json.loads(results_json.read_text())
    starts = [
        datetime.fromisoformat(stage["started_at"])
        for case in run["cases"]
        for stage in case["stages"]
        if stage.get("started_at")
    ]
    return [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(starts)]


def floor_rounds(script: Path, hosts: int, rounds: int) -> list[float]:
    """Milliseconds per round: spawn `hosts` copies of the script at once,
    wait for all. By posix_spawn, the cheapest way (the agents use it too)."""
    times = []
    argv, env = [str(script)], dict(os.environ)
    for _ in range(rounds):
        started = time.perf_counter()
        pids = [os.posix_spawn(argv[0], argv, env) for _ in range(hosts)]
        for pid in pids:
            os.waitpid(pid, 0)  # `true`: it ends
        times.append((time.perf_counter() - started) * 1000)
    return times


@dataclass
class Series:
    """One phalanx (this checkout's, or `--compare SRC`'s) at one size."""

    label: str
    env: dict[str, str]
    costs: list[float] = field(default_factory=list)  # ms per extra stage, one per repetition
    gaps: list[float] = field(default_factory=list)  # ms, every stage of every M-case run
    cpu_costs: list[float] = field(default_factory=list)  # CPU ms per extra stage

    def measure(self, suite: Path, out: Path, extra: int) -> None:
        one, one_cpu, _ = phalanx_run(suite, out / "1", self.env, "-t", "c0")
        many, many_cpu, results = phalanx_run(suite, out / "m", self.env)
        self.costs.append((many - one) * 1000 / extra)
        self.cpu_costs.append((many_cpu - one_cpu) * 1000 / extra)
        self.gaps += stage_gaps(results)


def bench_hosts(
    root: Path, hosts: int, cases: int, repeats: int, compare: Path | None = None
) -> None:
    suite = make_repo(root, hosts, cases)
    script = suite / "tc" / "c0" / "run.sh"
    script.chmod(0o755)
    extra = len(STAGES) * (cases - 1)
    env = installed_env()
    series = [Series("this checkout", env)]
    if compare is not None:
        series.append(Series(f"--compare {compare}", {**env, "PYTHONPATH": str(compare)}))
    for each in series:  # untimed: the .pyc files an installed copy has
        phalanx_run(suite, root / f"warm-{hosts}-{len(each.label)}", each.env, "-t", "c0")
    floors: list[float] = []  # ms, the median round of each repetition
    floor_all: list[float] = []
    cpu_floors: list[float] = []  # CPU ms per round: the spawner and its scripts
    for rep in range(repeats):
        # Interleaved: each repetition runs every phalanx and the floor, so
        # a change in the machine's load falls on all of them alike.
        for index, each in enumerate(series):
            each.measure(suite, root / f"r{hosts}-{rep}-{index}", extra)
        cpu = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN)
        rounds = floor_rounds(script, hosts, extra)
        cpu = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
        cpu_floors.append(cpu * 1000 / extra)
        floors.append(statistics.median(rounds))
        floor_all += rounds
    floor = statistics.median(floor_all)
    print(f"{hosts} hosts, {cases} cases x {len(STAGES)} stages, {repeats} repetitions")
    print(f"  {'ms per stage':<44} {'min':>7} {'median':>7} {'max':>7}")
    print(f"  {'spawn floor (median round, per repetition)':<44} {spread(floors)}")
    print(f"  {'floor rounds':<44} {spread(floor_all)}  p99 {p99(floor_all):.2f}")
    print(f"  {'CPU per floor round (spawner, scripts)':<44} {spread(cpu_floors)}")
    for each in series:
        cost, tail = statistics.median(each.costs), p99(each.gaps)
        ratios = [c / f for c, f in zip(each.costs, floors, strict=True)]
        cpu_ratios = [c / f for c, f in zip(each.cpu_costs, cpu_floors, strict=True)]
        print(f"  {each.label}:")
        print(f"  {'user-visible cost ((M-case - 1-case) / extra)':<44} {spread(each.costs)}")
        print(f"  {'ratio to the floor, per repetition':<44} {spread(ratios)}")
        print(f"  {'stage-start gaps in results.json':<44} {spread(each.gaps)}  p99 {tail:.2f}")
        print(f"  {'CPU per extra stage (run, agents, scripts)':<44} {spread(each.cpu_costs)}")
        print(f"  {'CPU ratio to the floor, per repetition':<44} {spread(cpu_ratios)}")
        median_ok = "ok" if cost <= TARGET_MEDIAN * floor else "MISSED"
        tail_ok = "ok" if tail <= TARGET_P99 * floor else "MISSED"
        print(
            f"  median {cost:.2f} ms = {cost / floor:.2f}x the floor {floor:.2f} ms "
            f"(target <= {TARGET_MEDIAN}x: {median_ok}); "
            f"p99 {tail:.2f} ms = {tail / floor:.2f}x (target <= {TARGET_P99}x: {tail_ok})"
        )
    if compare is not None:
        head, base = series
        print(
            "  this checkout / --compare, per repetition: cost "
            f"{spread([a / b for a, b in zip(head.costs, base.costs, strict=True)])}, CPU "
            f"{spread([a / b for a, b in zip(head.cpu_costs, base.cpu_costs, strict=True)])}"
        )


# --- for the provider benches (bench/providers*.py, bench/vms.py), which
# compare providers with one another on this measure ----------------------------


def suite(hosts: int, cases: int) -> Suite:
    """`cases` cases x 3 stages of `true` on `hosts` hosts, for run_local."""
    stage = Script(text="true")
    return Suite(
        name="bench",
        cluster=Cluster(name="bench", hosts=tuple(Host(name=f"h{i}.bench") for i in range(hosts))),
        cases=tuple(Case(name=f"c{i}", stages=dict.fromkeys(STAGES, stage)) for i in range(cases)),
    )


def overheads(result: RunResult) -> list[float]:
    """Per stage, in milliseconds: the stage's wall (the engine sending it
    to every host having reported) minus its slowest host's script time."""
    found = []
    for case in result.cases:
        for stage in case.stages:
            assert stage.started_at and stage.ended_at
            wall = (stage.ended_at - stage.started_at).total_seconds()
            slowest = max(
                (h.ended_at - h.started_at).total_seconds()
                for h in stage.hosts
                if h.ended_at and h.started_at
            )
            found.append((wall - slowest) * 1000)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--hosts", default="8,32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="SRC",
        help="also run phalanx from this src folder (another checkout's), interleaved",
    )
    args = parser.parse_args()
    compare = args.compare.resolve() if args.compare is not None else None
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as tmp:
        for hosts in (int(h) for h in args.hosts.split(",")):
            bench_hosts(Path(tmp), hosts, args.cases, args.repeats, compare)
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
