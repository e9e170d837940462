"""Start-up: what a user waits for on the smallest run, start to exit.

Each round runs, one after the other, as a user would type them:

- `phalanx run SUITE` of a 1-host, 1-case suite (provider local: one agent
  process, its stage a `#!/bin/sh` script that runs `true`), whole command:
  interpreter start, load, the embedded coordinator, the agent up and
  connected, the stage, the agent down, the reports written;
- the anchor, `python -m pytest -q one_test.py` with one trivial test, as
  this virtualenv has it (its plug-ins load: pytest-asyncio, xdist, ...);
- the same with `PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`: pytest alone, the
  stricter anchor;
- `phalanx --help`, the interpreter and the command's parser only.

The commands alternate within a round, so a change in the machine's load
falls on all of them alike; the ratios are taken round by round. Prints the
machine (cores, load average before and after), min / median / max wall
and CPU (user + system, the command and its children) of each, and the
ratios of phalanx to the anchors. Target: `phalanx run` <= 0.4 s wall.

    .venv/bin/python bench/startup.py [--rounds 10] [--compare SRC]

`--compare SRC` adds `phalanx run` from another checkout's `src` folder
(e.g. `git worktree add /tmp/before main`, then `--compare /tmp/before/src`),
in the same rounds, with this checkout's ratio to it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from bench.machine import installed_env

TARGET_S = 0.4
TIMEOUT = 120.0  # seconds for one command, on a loaded machine


@dataclass
class Series:
    label: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)


def make_suite(root: Path) -> Path:
    repo = root / "repo"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "one.yaml").write_text("name: one\nhosts:\n  - name: h1.bench\n")
    suite = repo / "test-suites" / "one"
    (suite / "tc" / "only").mkdir(parents=True)
    (suite / "suite.yaml").write_text("name: one\ncluster: one\ntests: [only]\n")
    script = suite / "tc" / "only" / "run.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    script.chmod(0o755)
    return suite


def make_pytest(root: Path) -> Path:
    folder = root / "pytest"
    folder.mkdir()
    (folder / "one_test.py").write_text("def test_one():\n    assert True\n")
    return folder


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(series: Series, command: list[str], cwd: Path, env: dict[str, str]) -> None:
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=TIMEOUT)
    series.walls.append(time.perf_counter() - started)
    series.cpus.append(children_cpu() - cpu)
    if done.returncode != 0:
        raise SystemExit(
            f"{series.label} exited {done.returncode}:\n"
            f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
        )


def spread(values: list[float]) -> str:
    return (
        f"{min(values) * 1000:7.0f} {statistics.median(values) * 1000:7.0f} "
        f"{max(values) * 1000:7.0f}"
    )


def ratios(numerator: Series, denominator: Series) -> list[float]:
    return [a / b for a, b in zip(numerator.walls, denominator.walls, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--compare", type=Path, metavar="SRC", help="also time phalanx run from this src folder"
    )
    args = parser.parse_args()
    python = sys.executable
    phalanx = Series("phalanx run (1 host, 1 case)")
    pytest = Series("pytest, one trivial test")
    bare = Series("pytest, plug-ins not loaded")
    helped = Series("phalanx --help")
    other = Series("phalanx run, --compare SRC") if args.compare else None
    before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-startup-") as tmp:
        root = Path(tmp)
        suite = make_suite(root)
        tests = make_pytest(root)
        results = root / "results"
        env = installed_env()
        env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        no_plugins = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        run = [python, "-m", "phalanx", "run", str(suite), "--results", str(results)]
        # -p no:cacheprovider: the anchor writes nothing into its folder
        # between rounds (its cache would change the next round's work).
        anchor = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "one_test.py"]
        # One untimed round first: it writes the .pyc files an installed copy has.
        for command, cwd in ((run, root), (anchor, tests)):
            subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=TIMEOUT)
        for _ in range(args.rounds):
            timed(phalanx, run, root, env)
            if other is not None:
                timed(other, run, root, {**env, "PYTHONPATH": str(args.compare.resolve())})
            timed(pytest, anchor, tests, env)
            timed(bare, anchor, tests, no_plugins)
            timed(helped, [python, "-m", "phalanx", "--help"], root, env)
    after = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {before[0]:.2f} before, "
        f"{after[0]:.2f} after; Python {sys.version.split()[0]}; {args.rounds} rounds"
    )
    print(f"{'':34} {'wall ms: min  median    max':>26}   {'CPU ms: min  median    max':>26}")
    for series in (phalanx, *([other] if other else []), pytest, bare, helped):
        print(f"{series.label:34} {spread(series.walls)}   {spread(series.cpus)}")
    for anchor_series in (*([other] if other else []), pytest, bare):
        found = ratios(phalanx, anchor_series)
        print(
            f"phalanx run / {anchor_series.label}: min {min(found):.2f}, "
            f"median {statistics.median(found):.2f}, max {max(found):.2f} (round by round)"
        )
    median = statistics.median(phalanx.walls)
    print(
        f"phalanx run median {median:.3f} s wall, target <= {TARGET_S} s "
        f"(ratio {median / TARGET_S:.2f})"
    )


if __name__ == "__main__":
    main()
