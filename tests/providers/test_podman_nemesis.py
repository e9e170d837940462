"""A case's `pause NAME` / `kill NAME` nemesis on container hosts
(`provider: podman`): each container's agent stops, resumes and kills the
case's processes so named inside its container, on the schedule the seed
gives, and what is paused when the run stage ends is resumed. Real
containers of the Debian test image; skipped, saying why, without podman."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from phalanx.history.nemesis import parse_fault, schedule
from tests.history.test_case_nemesis import KILLED, PAUSED, STATE, TICKER
from tests.providers.containers import image, needs_podman
from tests.providers.test_netns import _logs, _made_by, _phalanx, _repo

HOSTS = ["a.pod.test", "b.pod.test"]
EVERY = 0.3
SUITE = f"""\
name: s
cluster: c
tests:
  - pausing:
      nemesis: {{every: {EVERY}s, faults: [pause ticker], seed: 7}}
  - killing:
      nemesis: {{every: {EVERY}s, faults: [kill ticker], seed: 3}}
timeout: 120
"""


def _faults(case: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["f"], e["value"]) for e in case["history"]["events"] if e["process"] == "nemesis"]


def _planned(fault: str, seed: int) -> list[tuple[str, str]]:
    steps = schedule([parse_fault(fault)], HOSTS, EVERY, seed, 120)
    return [(s.action, s.what) for s in steps if s.action == "start"]


@needs_podman
def test_pause_and_kill_reach_the_cases_processes_inside_the_containers(tmp_path: Path) -> None:
    cluster = f"name: c\nprovider: podman\nimage: {image()}\nhosts:\n" + "".join(
        f"  - {h}\n" for h in HOSTS
    )
    stages = {"init.sh": TICKER, "finalize.sh": STATE}
    repo = _repo(
        tmp_path / "repo",
        cluster,
        {"pausing": {**stages, "run.sh": PAUSED}, "killing": {**stages, "run.sh": KILLED}},
    )
    (repo / "test-suites" / "s" / "suite.yaml").write_text(SUITE)
    done = _phalanx("run", str(repo), "-s", "s", "--plain", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "phalanx-results").iterdir()
    cases = {c["name"]: c for c in json.loads((run / "results.json").read_text())["cases"]}

    pausing = _logs(run, "pausing"), _logs(run, "pausing", "finalize")
    for host in HOSTS:
        assert "ticker paused" in pausing[0][host]
        # Paused or not when the stage ended, it runs again after it.
        assert pausing[1][host].split("ticker state: ")[1][0] in "SR", pausing[1][host]
    taken = _faults(cases["pausing"])
    starts = [(f, what.split(" (pid")[0]) for f, what in taken if f == "start"]
    assert starts == _planned("pause ticker", 7)[: len(starts)]
    assert {what.split(" on ")[1] for _, what in starts} == set(HOSTS)
    last_start = max(i for i, (f, _) in enumerate(taken) if f == "start")
    assert any(f == "heal" and "resume ticker" in w for f, w in taken[last_start + 1 :])

    killing = _logs(run, "killing"), _logs(run, "killing", "finalize")
    for host in HOSTS:
        assert "ticker killed" in killing[0][host]
        assert "ticker state: gone" in killing[1][host]
    kills = [what.split(" (")[0] for f, what in _faults(cases["killing"]) if f == "start"]
    assert kills == [what for _, what in _planned("kill ticker", 3)][: len(kills)]
    assert _made_by(run.name) == []
