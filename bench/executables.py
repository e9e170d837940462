"""Executable tests: what a trivial `run-test` costs, per test and per run.

Trees of SMALL and LARGE tests (50 and 500 by default), each test a folder
with `test-config.yaml` and a `run-test` that exits 0, run in one go, the
runners taking turns (so that the machine's load falls on all of them alike):

- `phalanx run TREE -j 2` and `-j 1` (the whole command, start to exit:
  interpreter start, loading the configs, running, writing results.json,
  JUnit, TAP and report.html);
- a bare serial bash loop, `for t in tests/*/run-test; do "$t"; done` (the
  anchor: nothing but spawning, one test at a time);
- a bare `subprocess.run` loop in this process;
- at LARGE only: pytest with one parametrized test that runs each `run-test`
  with subprocess, and `avocado run` on the `run-test` files
  (avocado-framework from PyPI, in the bench's own virtualenv under
  ~/.cache/phalanx-bench; 2 parallel tasks; once, it is slow).

For each runner: the wall time of a run of SMALL and of LARGE tests (min /
median / max of the repetitions), the marginal cost of a test, (median
LARGE - median SMALL) / (LARGE - SMALL), and the fixed cost of a run, median
SMALL - SMALL x marginal: what a run costs beside its tests (start-up,
loading, reports). Targets (issue 26): `-j 2` marginal at or below the serial
bash loop's; fixed cost of a SMALL run <= 0.2 s; end to end at most 2 ms per
test at LARGE and at least 50x faster than Avocado.

    .venv/bin/python bench/executables.py [--small 50] [--large 500] [--repeat 7] [--skip-avocado]
        [--compare SRC]

`--compare SRC` adds `phalanx run -j 2` from another src folder, in the same
rounds (`git archive BASE src | tar -x -C /tmp/before`, then
`--compare /tmp/before/src`).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from bench.machine import installed_env, machine, spread

TARGET_MS = 2.0
TARGET_VS_AVOCADO = 50.0
TARGET_FIXED_S = 0.2
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "phalanx-bench"
AVOCADO = "avocado-framework"


def make_tree(root: Path, count: int) -> list[Path]:
    tests = root / "tests"
    tests.mkdir(parents=True)
    listing = ["tests:"]
    scripts = []
    for i in range(count):
        folder = tests / f"t{i:04d}"
        folder.mkdir()
        (folder / "test-config.yaml").write_text("testinfo:\n    summary: 'trivial'\n")
        script = folder / "run-test"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
        scripts.append(script)
        listing.append(f"    - test: 't{i:04d}'")
    (tests / "tests.yaml").write_text("\n".join(listing) + "\n")
    return scripts


def cpu_seconds() -> float:
    """User and system CPU of this process and of its waited-for children."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(runner: Callable[[Path], float], root: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the run and all it started)."""
    before = cpu_seconds()
    wall = runner(root)
    return wall, cpu_seconds() - before


def timed(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    return time.perf_counter() - started, done


# The warm-up run writes phalanx's .pyc files, as installing a wheel does.
PHALANX_ENV = installed_env()


def phalanx_runner(jobs: int, src: Path | None = None) -> Callable[[Path], float]:
    """`phalanx run -j JOBS`; `src`: phalanx from that src folder instead."""
    env = PHALANX_ENV if src is None else {**PHALANX_ENV, "PYTHONPATH": str(src.resolve())}

    def run(root: Path) -> float:
        results = Path(tempfile.mkdtemp(prefix="results-", dir=root))
        command = [sys.executable, "-m", "phalanx.cli", "run", "tests", "-j", str(jobs),
                   "--results", str(results)]  # fmt: skip
        took, done = timed(command, root, env)
        if done.returncode != 0 or "passed" not in done.stdout:
            raise SystemExit(f"phalanx failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return took

    return run


BASH_LOOP = 'for t in tests/*/run-test; do "$t" || exit 1; done'


def bash_loop(root: Path) -> float:
    took, done = timed(["bash", "-c", BASH_LOOP], root)
    if done.returncode != 0:
        raise SystemExit(f"the bash loop failed: {done.stderr[-2000:]}")
    return took


def subprocess_loop(root: Path) -> float:
    scripts = sorted((root / "tests").glob("*/run-test"))
    started = time.perf_counter()
    for script in scripts:
        subprocess.run([str(script)], capture_output=True, check=True, timeout=60)
    return time.perf_counter() - started


def avocado_bin() -> Path | None:
    """avocado in its own virtualenv (made on first use); None if it cannot be installed."""
    env = CACHE / "avocado-venv"
    binary = env / "bin" / "avocado"
    if binary.exists():
        return binary
    print(f"installing {AVOCADO} into {env} ...", flush=True)
    venv.create(env, with_pip=True, clear=True)
    pip = subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "-q", AVOCADO],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if pip.returncode != 0 or not binary.exists():
        print(f"could not install {AVOCADO}: {pip.stderr.strip()[-500:]}")
        return None
    return binary


def bench_avocado(root: Path, scripts: list[Path]) -> float | None:
    binary = avocado_bin()
    if binary is None:
        return None
    took, done = timed(
        [
            str(binary),
            "run",
            "--job-results-dir",
            str(root / "avocado-results"),
            "--max-parallel-tasks",
            "2",
            "--disable-sysinfo",
            *[str(s) for s in scripts],
        ],
        root,
    )
    if done.returncode != 0:
        print(
            f"avocado failed (exit {done.returncode}):\n{done.stdout[-1500:]}{done.stderr[-1500:]}"
        )
        return None
    passed = re.search(r"PASS (\d+)", done.stdout)
    if passed is None or int(passed.group(1)) != len(scripts):
        print(f"avocado did not pass every test:\n{done.stdout[-1500:]}")
    return took


PYTEST_FILE = """
import subprocess
from pathlib import Path

import pytest

SCRIPTS = sorted(Path(__file__).parent.glob("tests/*/run-test"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.parent.name)
def test_run(script):
    assert subprocess.run([str(script)], capture_output=True).returncode == 0
"""


def bench_pytest(root: Path) -> float:
    (root / "test_tree.py").write_text(PYTEST_FILE)
    took, done = timed(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tree.py"], root
    )
    if done.returncode != 0:
        raise SystemExit(f"pytest failed:\n{done.stdout[-2000:]}")
    return took


RUNNERS: dict[str, Callable[[Path], float]] = {
    "phalanx run -j 2": phalanx_runner(2),
    "phalanx run -j 1": phalanx_runner(1),
    "bash loop (serial, anchor)": bash_loop,
    "subprocess.run loop": subprocess_loop,
}
PHALANX, ANCHOR = "phalanx run -j 2", "bash loop (serial, anchor)"
COMPARED = "phalanx run -j 2, --compare SRC"


def table(
    what: str, values: dict[tuple[str, int], list[float]], small: int, large: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Print each runner's spread at both sizes, marginal and fixed cost."""
    print(f"{'runner':32} {f'{small} tests, {what} s':>22} {f'{large} tests, {what} s':>22} "
          f"{'marginal ms':>12} {'fixed s':>8}")  # fmt: skip
    marginal: dict[str, float] = {}
    fixed: dict[str, float] = {}
    for name in RUNNERS:
        a, b = values[(name, small)], values[(name, large)]
        marginal[name] = (statistics.median(b) - statistics.median(a)) / (large - small)
        fixed[name] = statistics.median(a) - small * marginal[name]
        print(f"{name:32} {spread(a):>22} {spread(b):>22} {marginal[name] * 1000:12.3f} "
              f"{fixed[name]:8.3f}")  # fmt: skip
    return marginal, fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--large", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7, help="runs of each runner at each size")
    parser.add_argument("--skip-avocado", action="store_true")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="SRC",
        help="also run phalanx -j 2 from this src folder (e.g. the code before a change)",
    )
    args = parser.parse_args()
    if args.compare is not None:
        RUNNERS[COMPARED] = phalanx_runner(2, args.compare)
    small, large = args.small, args.large
    print(machine() + " (before)")
    walls: dict[tuple[str, int], list[float]] = {}
    cpus: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as tmp:
        roots = {n: Path(tmp) / f"tree-{n}" for n in (small, large)}
        scripts = {n: make_tree(root, n) for n, root in roots.items()}
        for root in roots.values():
            for runner in RUNNERS.values():
                runner(root)  # page cache and .pyc: measure the steady state
        # Round after round, every runner once at each size: the load moves,
        # and it moves for all of them.
        for _ in range(args.repeat):
            for n, root in roots.items():
                for name, runner in RUNNERS.items():
                    wall, cpu = measured(runner, root)
                    walls.setdefault((name, n), []).append(wall)
                    cpus.setdefault((name, n), []).append(cpu)
        end_to_end = {
            "pytest + subprocess": [bench_pytest(roots[large]) for _ in range(min(3, args.repeat))]
        }
        avocado = None if args.skip_avocado else bench_avocado(roots[large], scripts[large])
        if avocado is not None:
            end_to_end["avocado run (2 tasks)"] = [avocado]
    print(machine() + " (after)")
    print(
        f"\ntrivial run-test executables, wall time start to exit, {args.repeat} runs each "
        "(min / median / max); marginal = (median large - median small) / "
        f"{large - small} tests; fixed = median small - {small} x marginal\n"
    )
    marginal, fixed = table("wall", walls, small, large)
    print(
        "\nCPU (user + system, of the run and every process it started; what a busy "
        "machine's load changes least):"
    )
    table("CPU", cpus, small, large)
    ours, anchor = marginal[PHALANX], marginal[ANCHOR]
    print(
        f"\n-j 2 marginal / serial bash loop marginal: {ours / anchor:.2f} "
        f"(target <= 1.00: {'met' if ours <= anchor else 'NOT met'})"
    )
    if COMPARED in marginal:
        print(
            f"--compare SRC: marginal / serial bash loop {marginal[COMPARED] / anchor:.2f}, "
            f"fixed {fixed[COMPARED]:.3f} s"
        )
    ok = fixed[PHALANX] <= TARGET_FIXED_S
    print(
        f"-j 2 fixed cost of a {small}-test run: {fixed[PHALANX]:.3f} s "
        f"(target <= {TARGET_FIXED_S} s: {'met' if ok else 'NOT met'})"
    )
    phalanx_large = statistics.median(walls[(PHALANX, large)])
    print(f"\nend to end at {large} tests (median; ratio to phalanx -j 2's median):")
    rows = {name: walls[(name, large)] for name in RUNNERS} | end_to_end
    for name, values in rows.items():
        mid = statistics.median(values)
        print(f"  {name:28} {spread(values):>20} s {mid / large * 1000:8.2f} ms/test "
              f"{mid / phalanx_large:7.1f}x")  # fmt: skip
    per_test = phalanx_large / large * 1000
    verdict = "met" if per_test <= TARGET_MS else "NOT met"
    print(f"target: <= {TARGET_MS} ms/test end to end: {per_test:.2f}, {verdict}")
    if avocado is not None:
        speedup = avocado / phalanx_large
        verdict = "met" if speedup >= TARGET_VS_AVOCADO else "NOT met"
        print(f"target: >= {TARGET_VS_AVOCADO:g}x faster than avocado: {speedup:.1f}x, {verdict}")
    else:
        print("avocado: not measured")


if __name__ == "__main__":
    main()
