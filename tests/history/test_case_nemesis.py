"""A case's `nemesis:` and `check:` in a real `phalanx run` (provider
local): the coordinator pauses and kills the case's processes by name on
the schedule its seed gives, records each fault in the case's history, and
resumes what is paused when the run stage ends; a Python client's history
that shows a lost element fails the case by its `set` check; a nemesis
that cannot cut the network makes its case an error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from phalanx.exits import EXIT_INFRASTRUCTURE
from phalanx.history.nemesis import parse_fault, schedule

HOSTS = ["h1.phalanx.test", "h2.phalanx.test"]
TICKER = """\
printf '#!/bin/sh\\nwhile :; do sleep 0.05; done\\n' > ticker
chmod +x ticker
setsid ./ticker > /dev/null 2>&1 < /dev/null &
echo $! > ticker.pid
"""
# Each host waits (at most 60 s) until the nemesis reached its ticker.
PAUSED = """\
pid=$(cat ticker.pid)
for i in $(seq 600); do
    if [ "$(awk '{print $3}' /proc/$pid/stat)" = T ]; then echo "ticker paused"; exit 0; fi
    sleep 0.1
done
echo "ticker never paused"; exit 1
"""
KILLED = """\
pid=$(cat ticker.pid)
for i in $(seq 600); do
    if ! kill -0 "$pid" 2>/dev/null; then echo "ticker killed"; exit 0; fi
    sleep 0.1
done
echo "ticker never killed"; exit 1
"""
STATE = """\
echo "ticker state: $(awk '{print $3}' /proc/$(cat ticker.pid)/stat 2>/dev/null || echo gone)"
"""
# A set that loses the element 3: the client's add is acknowledged, the
# final read does not have it.
SET_CLIENT = """\
PY=$(sed -n '1s/^#!//p' "$(command -v phalanx-op)")
"$PY" - <<'CLIENT'
from phalanx import history
kept = []
for element in range(1, 6):
    with history.op("add", element, key="s", client="py"):
        if element != 3:
            kept.append(element)
with history.op("read-set", key="s", client="py") as o:
    o.ok(kept)
CLIENT
"""


def _suite(root: Path) -> None:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "two.yaml").write_text(
        "name: two\nhosts:\n" + "".join(f"  - name: {h}\n" for h in HOSTS)
    )
    suite = root / "test-suites" / "faults"
    for case, stages in {
        "pausing": {"init.sh": TICKER, "run.sh": PAUSED, "finalize.sh": STATE},
        "killing": {"init.sh": TICKER, "run.sh": KILLED, "finalize.sh": STATE},
        "lost_element": {"run.sh": SET_CLIENT},
        "no_network": {"run.sh": "sleep 1\n"},
    }.items():
        (suite / "tc" / case).mkdir(parents=True)
        for name, text in stages.items():
            (suite / "tc" / case / name).write_text(text)
    (suite / "suite.yaml").write_text(
        """\
name: faults
cluster: two
tests:
  - pausing:
      nemesis: {every: 0.3s, faults: [pause ticker], seed: 7}
  - killing:
      nemesis: {every: 0.3s, faults: [kill ticker], seed: 3}
  - lost_element:
      roles: []
      check: set
  - no_network:
      nemesis: {every: 0.2s, faults: [isolate-random], seed: 1}
timeout: 90
"""
    )


def _run(root: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "phalanx",
            "run",
            str(root),
            "-s",
            "faults",
            "--plain",
            "--results",
            str(root / "results"),
            "--json",
            str(root / "results.json"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=root,
    )
    cases = {c["name"]: c for c in json.loads((root / "results.json").read_text())["cases"]}
    return done, cases


def _faults(case: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["f"], e["value"]) for e in case["history"]["events"] if e["process"] == "nemesis"]


def _planned(fault: str, seed: int) -> list[tuple[str, str]]:
    return [(s.action, s.what) for s in schedule([parse_fault(fault)], HOSTS, 0.3, seed, 90)]


def _output(root: Path, case: str, stage: str, host: str) -> str:
    (path,) = (root / "results").glob(f"*/cases/{case}/{stage}/{host}.log")
    return path.read_text()


def test_the_nemesis_follows_its_seed_heals_at_the_end_and_the_check_fails_a_case(
    tmp_path: Path,
) -> None:
    _suite(tmp_path)
    done, cases = _run(tmp_path)
    assert done.returncode == EXIT_INFRASTRUCTURE, done.stdout + done.stderr  # no_network's error

    pausing = cases["pausing"]
    assert pausing["status"] == "passed", pausing["reason"]
    for host in HOSTS:
        assert "ticker paused" in _output(tmp_path, "pausing", "run", host)
        # The run stage ended with a ticker paused: it was resumed, not left stopped.
        state = _output(tmp_path, "pausing", "finalize", host).split("ticker state: ")[1][0]
        assert state in "SR", state
    taken = _faults(pausing)
    planned = _planned("pause ticker", 7)
    # The schedule the seed gives, step by step, until the stage ended ...
    starts = [(f, what.split(" (pid")[0]) for f, what in taken if f == "start"]
    assert starts == [s for s in planned if s[0] == "start"][: len(starts)]
    assert {what.split(" on ")[1] for _, what in starts} == set(HOSTS)
    # ... each pause naming the process it stopped, and whatever held at the end resumed.
    assert all("(pid " in what for f, what in taken if f == "start")
    last_start = max(i for i, (f, _) in enumerate(taken) if f == "start")
    assert any(f == "heal" and "resume ticker" in w for f, w in taken[last_start + 1 :])

    killing = cases["killing"]
    assert killing["status"] == "passed", killing["reason"]
    for host in HOSTS:
        assert "ticker killed" in _output(tmp_path, "killing", "run", host)
        assert "ticker state: gone" in _output(tmp_path, "killing", "finalize", host)
    kills = [what.split(" (")[0] for f, what in _faults(killing) if f == "start"]
    assert kills == [w for f, w in _planned("kill ticker", 3) if f == "start"][: len(kills)]

    lost = cases["lost_element"]
    assert lost["status"] == "failed"
    assert all(s["status"] == "passed" for s in lost["stages"])
    assert lost["reason"] == "history not a valid set on key s"
    history = lost["history"]
    assert {e["process"] for e in history["events"]} == {f"{h}/py" for h in HOSTS}
    (window,) = history["windows"]
    assert any("add 3" in op["text"] for op in window["ops"])

    # Local hosts share one network: a nemesis that would cut it cannot,
    # and the case says so rather than pass untested.
    no_network = cases["no_network"]
    assert no_network["status"] == "error"
    assert no_network["reason"].startswith(
        "nemesis: network faults need hosts with a network of their own"
    )
    assert no_network["reason"].endswith("this run's hosts are local hosts")
