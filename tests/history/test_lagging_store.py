"""The lagging-store example, run as a user runs it: three clients record
their operations with `phalanx-op` against a real HTTP store; the records
travel through each host's agent to the coordinator, which puts them on its
own clock and judges each case's history by its `check: register`. Leader
reads pass; follower reads fail the case, with the window that shows the
stale read."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from phalanx.history.formats import from_json_lines

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "histories"
CLIENTS = {"c1.phalanx.test", "c2.phalanx.test", "c3.phalanx.test"}


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
        timeout=170,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "follower_reads   failed" in done.stdout
    cases = {c["name"]: c for c in json.loads((tmp_path / "results.json").read_text())["cases"]}
    leader, follower = cases["leader_reads"], cases["follower_reads"]
    assert leader["status"] == "passed"
    assert leader["history"]["valid"] is True
    assert follower["status"] == "failed"
    # Every stage passed: the check alone failed the case.
    assert all(s["status"] == "passed" for s in follower["stages"])
    assert follower["reason"] == "history not linearizable on key x"
    history = follower["history"]
    assert history["check"] == "register"
    assert history["valid"] is False
    # One history from the three clients: 10 writes and 10 reads each.
    events = history["events"]
    assert {e["host"] for e in events} == CLIENTS
    assert len(events) == 3 * 20 * 2
    # Each client host's clock measured against the coordinator's.
    assert {c["host"] for c in history["clocks"]} == CLIENTS
    assert all(c["samples"] >= 1 and c["rtt"] > 0 for c in history["clocks"])
    # On the coordinator's clock: inside the run stage as the coordinator timed it.
    run = next(s for s in follower["stages"] if s["name"] == "run")
    began = datetime.fromisoformat(run["started_at"]).timestamp()
    ended = datetime.fromisoformat(run["ended_at"]).timestamp()
    assert all(began <= e["time"] <= ended for e in events)
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    # The window: a write that completed, then a read that missed it.
    (window,) = history["windows"]
    assert window["key"] == "x"
    texts = [op["text"] for op in window["ops"]]
    assert any(t.startswith("read → ") for t in texts), texts
    # The run folder keeps it as files `phalanx check` and Jepsen's tools read.
    (folder,) = (tmp_path / "results").iterdir()
    jsonl = folder / "cases" / "follower_reads" / "history.jsonl"
    assert len(list(from_json_lines(jsonl.read_text(), str(jsonl)))) == len(events)
    check = subprocess.run(
        [sys.executable, "-m", "phalanx", "check", "--model", "register", str(jsonl)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1
    assert "history not linearizable on key x" in check.stdout
    edn = (folder / "cases" / "follower_reads" / "history.edn").read_text()
    assert edn.startswith("[{:process ") and edn.count(":type :invoke") == 3 * 20
