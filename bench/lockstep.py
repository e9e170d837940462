"""Lockstep overhead: what a barrier costs on top of the scripts themselves.

A suite of 100 cases x 3 stages of `true` runs on 2, 8 and 32 local hosts.
Stage overhead = the stage's wall time (from the engine sending it to every
host having reported) minus the slowest host's script time (as its agent
measured it). Also the wall time of `phalanx run` on a 1-case, 1-host suite,
start to exit, as a user sees it.

Peers: LAVA and openQA poll for state every 1 to 5 s, so their per-stage
overhead floor is seconds; the targets below are what phalanx must do on a
2-core machine.

    .venv/bin/python bench/lockstep.py [--cases 100] [--hosts 2,8,32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phalanx.coordinator.runs import RunOptions, run_local
from phalanx.model import Case, Cluster, Host, RunResult, Script, Suite

TARGET_MEDIAN_MS = 5.0  # at 8 hosts
TARGET_P99_MS = 20.0  # at 8 hosts
TARGET_CLI_S = 1.5


def suite(hosts: int, cases: int) -> Suite:
    stage = Script(text="true")
    return Suite(
        name="bench",
        cluster=Cluster(name="bench", hosts=tuple(Host(name=f"h{i}.bench") for i in range(hosts))),
        cases=tuple(
            Case(name=f"c{i}", stages={"initialize": stage, "run": stage, "finalize": stage})
            for i in range(cases)
        ),
    )


def overheads(result: RunResult) -> list[float]:
    """Per stage, in milliseconds."""
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


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def bench_hosts(hosts: int, cases: int, root: Path) -> tuple[float, float, float]:
    started = time.perf_counter()
    result, _ = asyncio.run(run_local(suite(hosts, cases), RunOptions(results=root)))
    wall = time.perf_counter() - started
    if result.status != "passed":
        raise SystemExit(f"the benchmark suite did not pass on {hosts} hosts: {result.status}")
    values = overheads(result)
    return statistics.median(values), p99(values), wall


def bench_cli(root: Path, repeats: int = 5) -> float:
    repo = root / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "one.yaml").write_text("name: one\nhosts:\n  - name: h1.bench\n")
    suite_dir = repo / "test-suites" / "one"
    (suite_dir / "tc" / "only").mkdir(parents=True)
    (suite_dir / "suite.yaml").write_text("name: one\ncluster: one\ntests: [only]\n")
    (suite_dir / "tc" / "only" / "run.sh").write_text("true\n")
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "phalanx", "run", str(suite_dir), "--plain",
             "--results", str(root / "cli-results")],
            capture_output=True,
            check=False,
        )  # fmt: skip
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"phalanx run failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--hosts", default="2,8,32")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as tmp:
        root = Path(tmp)
        print(f"lockstep overhead, {args.cases} cases x 3 stages of `true`")
        print(f"{'hosts':>5} {'median ms':>10} {'p99 ms':>8} {'run wall s':>11}")
        for hosts in (int(h) for h in args.hosts.split(",")):
            median, tail, wall = bench_hosts(hosts, args.cases, root)
            print(f"{hosts:>5} {median:>10.2f} {tail:>8.2f} {wall:>11.2f}")
            if hosts == 8:
                print(
                    f"      target at 8 hosts: median <= {TARGET_MEDIAN_MS} ms "
                    f"(ratio {median / TARGET_MEDIAN_MS:.2f}), p99 <= {TARGET_P99_MS} ms "
                    f"(ratio {tail / TARGET_P99_MS:.2f}); a 1 s poll (LAVA, openQA) "
                    f"is {1000 / median:.0f}x the median"
                )
        cli = bench_cli(root)
        print(
            f"`phalanx run`, 1 case on 1 host, median of 5: {cli:.2f} s "
            f"(target <= {TARGET_CLI_S} s, ratio {cli / TARGET_CLI_S:.2f})"
        )


if __name__ == "__main__":
    main()
