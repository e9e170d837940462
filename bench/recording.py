"""What recording an operation costs a test: `phalanx.history.op` inside a
real stage (provider local), each record handed to the host's agent on its
way to the coordinator, next to the anchor, the same records appended to a
file only ($PHALANX_HISTORY, as before histories went through the agent).

One `phalanx run` of a generated suite: its run stage times ROUNDS rounds of
OPS recorded operations per way, the two ways taking turns, and prints each
round's microseconds per operation; this script reads them from the stage's
output and prints min/median/max per way and the ratio of medians, with the
machine's cores and load (other work on it moves absolutes; the ratio less).

    .venv/bin/python bench/recording.py [--ops 300] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

STAGE = """\
PY=$(sed -n '1s/^#!//p' "$(command -v phalanx-op)")
"$PY" - {ops} {rounds} <<'BENCH'
import json, os, sys, time
from phalanx import history

ops, rounds = int(sys.argv[1]), int(sys.argv[2])
agent = {{k: os.environ[k] for k in ("PHALANX_AGENT_SOCKET", "PHALANX_STAGE_ID")}}
path = os.path.abspath("anchor.jsonl")

def round_of(way):
    if way == "file":
        for k in agent:
            os.environ.pop(k, None)
        where = path
    else:
        os.environ.update(agent)
        where = None
    began = time.perf_counter()
    for i in range(ops):
        with history.op("write", i, key="x", client="bench", path=where):
            pass
    return (time.perf_counter() - began) / ops * 1e6

for r in range(rounds):
    for way in (("file", "agent") if r % 2 == 0 else ("agent", "file")):
        print("BENCH " + json.dumps({{"way": way, "us": round_of(way)}}), flush=True)
BENCH
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-rec-") as tmp:
        root = Path(tmp)
        (root / "clusters").mkdir()
        (root / "clusters" / "one.yaml").write_text("name: one\nhosts:\n  - name: h1.bench.test\n")
        case = root / "test-suites" / "rec" / "tc" / "record"
        case.mkdir(parents=True)
        (case / "run.sh").write_text(STAGE.format(ops=args.ops, rounds=args.rounds))
        (root / "test-suites" / "rec" / "suite.yaml").write_text(
            "cluster: one\ntests: [record]\ntimeout: 600\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "phalanx", "run", str(root), "-s", "rec", "--plain",
             "--results", str(root / "results")],
            capture_output=True, text=True, timeout=900, cwd=root,
        )  # fmt: skip
        logs = list((root / "results").glob("*/cases/record/run/h1.bench.test.log"))
        if done.returncode != 0 or not logs:
            print(done.stdout + done.stderr, file=sys.stderr)
            return 1
        rounds: dict[str, list[float]] = {"file": [], "agent": []}
        for line in logs[0].read_text().splitlines():
            if line.startswith("BENCH "):
                found = json.loads(line.removeprefix("BENCH "))
                rounds[found["way"]].append(found["us"])
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{args.rounds} rounds of {args.ops} operations (2 records each) per way, taking turns")
    for way, label in (("file", "file only (anchor)"), ("agent", "through the agent")):
        us = rounds[way]
        print(
            f"{label:<20} µs per operation: min {min(us):.0f}  median "
            f"{statistics.median(us):.0f}  max {max(us):.0f}"
        )
    ratio = statistics.median(rounds["agent"]) / statistics.median(rounds["file"])
    print(f"ratio (agent / file, medians): {ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
