"""Ctrl-C and SIGTERM during `phalanx run` on a suite, as a user sends them
to the real command: the run is cancelled, the finalizes run (or, after a
second signal, do not), every report is written, and nothing is left
running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.processes import gone, run_folder, wait_for

HOSTS = ("h0.phalanx.test", "h1.phalanx.test")
CLUSTER = "name: two\nhosts:\n" + "".join(f"  - name: {h}\n" for h in HOSTS)
SUITE = """name: s
cluster: two
tests: [first, slow, later]
finalize: |
  touch suite-finalized
timeout: 120
"""
# The stage cwd is the host's folder: every file below lands there.
SLOW_RUN = """echo $PPID > agent.pid
sleep 300 &
echo $! > run-child.pid
touch running
wait
"""
FINALIZE = "touch finalized\n"
# finalize-started is touched last: once it exists, the child's pid file is whole.
HANGING_FINALIZE = """sleep 300 &
echo $! > finalize-child.pid
touch finalize-started
wait
"""


def _repo(root: Path, finalize: str) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "two.yaml").write_text(CLUSTER)
    suite = root / "test-suites" / "s"
    cases = {
        "first": {"run.sh": "true\n"},
        "slow": {"run.sh": SLOW_RUN, "finalize.sh": finalize},
        "later": {"run.sh": "touch later-ran\n"},
    }
    for name, files in cases.items():
        (suite / "tc" / name).mkdir(parents=True)
        for file, text in files.items():
            (suite / "tc" / name / file).write_text(text)
    (suite / "suite.yaml").write_text(SUITE)
    return suite


def _start(suite: Path, cwd: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "phalanx.cli", "run", str(suite), "--plain", *options],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pids(hosts: Path, name: str) -> list[int]:
    files = [hosts / h / name for h in HOSTS]
    assert all(f.exists() for f in files), f"{name} missing on a host"
    return [int(f.read_text()) for f in files]


def _results(cwd: Path) -> dict[str, Any]:
    (run,) = (cwd / "phalanx-results").iterdir()
    for report in ("junit.xml", "results.tap"):
        assert (run / report).is_file(), f"no {report}"
    data: dict[str, Any] = json.loads((run / "results.json").read_text())
    return data


def _stage(data: dict[str, Any], case: str, stage: str) -> dict[str, Any]:
    found = next(c for c in data["cases"] if c["name"] == case)
    result: dict[str, Any] = next(s for s in found["stages"] if s["name"] == stage)
    return result


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_stage_cancels_runs_the_finalizes_and_writes_every_report(
    tmp_path: Path, sig: signal.Signals
) -> None:
    suite = _repo(tmp_path / "repo", FINALIZE)
    proc = _start(suite, tmp_path)
    try:
        wait_for([tmp_path / "phalanx-results"], proc)
        hosts = run_folder(tmp_path, proc) / "hosts"
        wait_for([hosts / h / "running" for h in HOSTS], proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    data = _results(tmp_path)
    assert data["status"] == "cancelled"
    assert data["reason"] == f"cancelled by {sig.name}"
    statuses = {c["name"]: c["status"] for c in data["cases"]}
    assert statuses == {"first": "passed", "slow": "cancelled", "later": "cancelled"}
    run = _stage(data, "slow", "run")
    assert {h["status"] for h in run["hosts"]} == {"cancelled"}
    assert {h["reason"] for h in run["hosts"]} == {f"cancelled by {sig.name}"}
    assert "agent lost" not in json.dumps(data)
    # The finalizes ran: the case's and the suite's, on every host.
    assert _stage(data, "slow", "finalize")["status"] == "passed"
    assert next(s for s in data["stages"] if s["name"] == "finalize")["status"] == "passed"
    for h in HOSTS:
        assert (hosts / h / "finalized").exists() and (hosts / h / "suite-finalized").exists()
        assert not (hosts / h / "later-ran").exists()
    # Nothing is left: the agents, the stages' processes.
    for pid in _pids(hosts, "agent.pid") + _pids(hosts, "run-child.pid"):
        assert gone(pid), f"process {pid} outlived the run"


def test_a_second_signal_cuts_the_finalizes_short_and_still_writes_the_reports(
    tmp_path: Path,
) -> None:
    suite = _repo(tmp_path / "repo", HANGING_FINALIZE)
    proc = _start(suite, tmp_path)
    try:
        wait_for([tmp_path / "phalanx-results"], proc)
        hosts = run_folder(tmp_path, proc) / "hosts"
        wait_for([hosts / h / "running" for h in HOSTS], proc)
        proc.send_signal(signal.SIGINT)
        wait_for([hosts / h / "finalize-started" for h in HOSTS], proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    data = _results(tmp_path)
    assert data["status"] == "cancelled" and data["reason"] == "cancelled by SIGINT"
    fin = _stage(data, "slow", "finalize")
    assert fin["status"] == "cancelled"
    assert {h["reason"] for h in fin["hosts"]} == {
        "cancelled by SIGINT; finalize cut short: a second signal (SIGINT)"
    }
    suite_fin = next(s for s in data["stages"] if s["name"] == "finalize")
    assert suite_fin["status"] == "cancelled"
    for h in HOSTS:
        assert not (hosts / h / "suite-finalized").exists()
    pids = _pids(hosts, "agent.pid") + _pids(hosts, "run-child.pid")
    for pid in pids + _pids(hosts, "finalize-child.pid"):
        assert gone(pid), f"process {pid} outlived the run"


def test_finalizes_that_outlast_the_cancel_grace_are_cut_short(tmp_path: Path) -> None:
    suite = _repo(tmp_path / "repo", HANGING_FINALIZE)
    proc = _start(suite, tmp_path, "--cancel-grace", "3")
    try:
        hosts = run_folder(tmp_path, proc) / "hosts"
        wait_for([hosts / h / "running" for h in HOSTS], proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    data = _results(tmp_path)
    assert data["status"] == "cancelled" and data["reason"] == "cancelled by SIGINT"
    fin = _stage(data, "slow", "finalize")
    assert {h["reason"] for h in fin["hosts"]} == {
        "cancelled by SIGINT; finalize cut short: the cancel grace of 3s ran out"
    }
    for pid in _pids(hosts, "finalize-child.pid") + _pids(hosts, "agent.pid"):
        assert gone(pid), f"process {pid} outlived the run"
