"""Output at volume: what a run costs when its hosts print a lot.

One host writes 1 GiB in one stage; then 8 hosts write 100 MiB each; each
with and without `-v` (the plain console, its stdout to /dev/null, so what
is measured is phalanx and not a terminal). The output is log-like lines of
64 bytes. For each: the coordinator's peak RSS (`phalanx run`'s VmHWM, read
from /proc while it runs), the run's wall time, whether an agent was lost,
and the lockstep overhead of the trivial stage right after the big one (the
case's finalize, `true`), next to the same stage's overhead in a run whose
big stage prints nothing. Stage overhead as in bench/lockstep.py: the
stage's wall time minus its slowest host's script time. The agents' memory
too: each agent process's peak RSS (VmHWM, read the same way from the
processes `phalanx run` started), the largest and their sum.

Targets: peak RSS <= 150 MiB, no agent lost, the stage after the output
within 2x its usual overhead. The ratio columns print what they are named:
`RSS/target` the coordinator's peak over 150 MiB, `after/usual` the stage
after the output's overhead over its usual one (target <= 2).

    .venv/bin/python bench/output.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from bench.machine import machine

MIB = 1024 * 1024
TARGET_RSS_MIB = 150.0
TARGET_AFTER_RATIO = 2.0
LINE = "0123456789 the quick brown fox jumps over the lazy dog, again!\n"  # 64 bytes
BASELINE_RUNS = 3


@dataclass
class Measure:
    peak_rss_mib: float
    wall_s: float
    lost: bool
    status: str
    after_ms: float  # overhead of the stage right after the big one
    agents_mib: list[float]  # each agent process's peak RSS


def size_text(mib: float) -> str:
    """What a host prints, as the scenario names it (--scale changes it)."""
    return f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib:g} MiB"


def write_repo(root: Path, hosts: int, size: int) -> Path:
    """A one-case suite: `run` prints `size` bytes on every host (nothing if
    0), `finalize` is `true`."""
    names = "".join(f"  - name: h{i}.bench\n" for i in range(hosts))
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "c.yaml").write_text(f"name: c\nhosts:\n{names}")
    suite = root / "test-suites" / "out"
    case = suite / "tc" / "big"
    case.mkdir(parents=True)
    (suite / "suite.yaml").write_text("name: out\ncluster: c\ntests: [big]\ntimeout: 600\n")
    line = LINE.rstrip("\n")
    run = f"yes '{line}' | head -c {size}\n" if size else "true\n"
    (case / "run.sh").write_text(run)
    (case / "finalize.sh").write_text("true\n")
    return suite


def overhead_ms(stage: dict[str, object]) -> float:
    def moment(value: object) -> float:
        from datetime import datetime

        return datetime.fromisoformat(str(value)).timestamp()

    hosts = stage["hosts"]
    assert isinstance(hosts, list)
    slowest = max(moment(h["ended_at"]) - moment(h["started_at"]) for h in hosts)
    return (moment(stage["ended_at"]) - moment(stage["started_at"]) - slowest) * 1000


def vm_hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (its children's children too)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with contextlib.suppress(OSError):
                    children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
                    found += [int(c) for c in children]
                    todo += [int(c) for c in children]
    return found


def _agent_argv(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"phalanx.host" in argv or (b"agent" in argv and any(b"phalanx" in a for a in argv))


def is_agent(pid: int) -> bool:
    """An agent process: its command line says so, and its parent's does not
    (a process an agent forks carries the agent's until it execs)."""
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return False
    return _agent_argv(pid) and not _agent_argv(ppid)


def measure(suite: Path, results: Path, verbose: bool) -> Measure:
    command = [sys.executable, "-m", "phalanx", "run", str(suite), "--plain",
               "--results", str(results)] + (["-v"] if verbose else [])  # fmt: skip
    started = time.perf_counter()
    err_path = results.parent / f"{results.name}.stderr"
    with err_path.open("wb") as err:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        peak = [0]
        agents: dict[int, int] = {}  # agent pid -> its peak RSS seen, KiB

        def sample() -> None:
            while child.poll() is None:
                peak[0] = max(peak[0], vm_hwm_kib(child.pid) or 0)
                for pid in descendants(child.pid):
                    if pid in agents or is_agent(pid):
                        agents[pid] = max(agents.get(pid, 0), vm_hwm_kib(pid) or 0)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        child.wait(timeout=1800)
        sampler.join()
    wall = time.perf_counter() - started
    (folder,) = results.iterdir()
    data = json.loads((folder / "results.json").read_text())
    stages = data["cases"][0]["stages"]
    after = next(s for s in stages if s["name"] == "finalize")
    lost = "agent lost" in json.dumps(data) or "agent lost" in err_path.read_text(errors="replace")
    agents_mib = [kib / 1024 for kib in agents.values()]
    return Measure(peak[0] / 1024, wall, lost, data["status"], overhead_ms(after), agents_mib)


def scenario(root: Path, name: str, hosts: int, size: int, verbose: bool) -> Measure:
    base = root / name
    suite = write_repo(base / "repo", hosts, size)
    return measure(suite, base / "results", verbose)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="of the output sizes")
    args = parser.parse_args()
    cases = [
        (f"1 host x {size_text(1024 * args.scale)}", 1, int(1024 * MIB * args.scale)),
        (f"8 hosts x {size_text(100 * args.scale)}", 8, int(100 * MIB * args.scale)),
    ]
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-output-") as tmp:
        root = Path(tmp)
        print(machine())
        print(f"{'scenario':<28} {'peak RSS':>9} {'agents max':>10} {'agents sum':>10} "
              f"{'wall':>8} {'lost':>5} {'after':>9} {'usual':>8} {'RSS/target':>10} "
              f"{'after/usual':>11}")  # fmt: skip
        for label, hosts, size in cases:
            usual = statistics.median(
                scenario(root, f"base-{hosts}-{i}", hosts, 0, False).after_ms
                for i in range(BASELINE_RUNS)
            )
            for verbose in (False, True):
                tag = f"{label}{' -v' if verbose else ''}"
                m = scenario(root, f"{hosts}-{size}-{verbose}", hosts, size, verbose)
                rss_ratio = m.peak_rss_mib / TARGET_RSS_MIB
                after_ratio = m.after_ms / max(usual, 0.001)
                agents_max = max(m.agents_mib, default=0.0)
                print(
                    f"{tag:<28} {m.peak_rss_mib:>6.1f}MiB {agents_max:>7.1f}MiB "
                    f"{sum(m.agents_mib):>7.1f}MiB {m.wall_s:>7.1f}s "
                    f"{'yes' if m.lost else 'no':>5} {m.after_ms:>7.2f}ms {usual:>6.2f}ms "
                    f"{rss_ratio:>10.2f} {after_ratio:>11.2f}"
                    + ("" if m.status == "passed" else f"  run {m.status}!")
                    + ("" if len(m.agents_mib) == hosts else f"  ({len(m.agents_mib)} agents seen)")
                )
        print(machine())
        print(
            f"RSS/target: the coordinator's peak RSS over {TARGET_RSS_MIB:g} MiB (target <= 1); "
            f"after/usual: the stage after the output's overhead over its usual one "
            f"(target <= {TARGET_AFTER_RATIO:g}); agents: each agent's peak RSS (VmHWM), the "
            "largest and the sum"
        )


if __name__ == "__main__":
    main()
