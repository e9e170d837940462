"""The lagging-store example, run as a user runs it: three clients record
their operations with `phalanx-op` against a real HTTP store, the store
host checks the merged history. Leader reads pass; follower reads fail,
with the window that shows the stale read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "histories"


def test_follower_reads_fail_the_register_check_and_leader_reads_pass(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "phalanx",
            "run",
            str(EXAMPLE),
            "-s",
            "lagging_store",
            "--plain",
            "--results",
            str(tmp_path / "results"),
            "--json",
            str(tmp_path / "results.json"),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    cases = {c["name"]: c for c in json.loads((tmp_path / "results.json").read_text())["cases"]}
    assert cases["leader_reads"]["status"] == "passed"
    assert cases["follower_reads"]["status"] == "failed"
    (log,) = (tmp_path / "results").glob("*/cases/follower_reads/run/store.phalanx.test.log")
    lines = log.read_text().splitlines()
    verdict = next(i for i, line in enumerate(lines) if "history not linearizable" in line)
    assert lines[verdict].endswith("history not linearizable on key x")
    assert "operations cannot be ordered" in lines[verdict + 1]
    assert "read → " in "\n".join(lines[verdict + 2 :])
