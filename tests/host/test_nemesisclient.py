"""`phalanx-nemesis` refuses what it cannot do before it faults anything
(its faults through the agent are run by the etcd example's test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def nemesis(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "phalanx-nemesis"), *args], capture_output=True, text=True, timeout=30
    )


def test_an_unknown_fault_exits_2_saying_so() -> None:
    done = nemesis("--hosts", "a,b", "--for", "1s", "partition-all")
    assert done.returncode == 2
    assert done.stderr.startswith("phalanx-nemesis: unknown fault 'partition-all'")


def test_pause_and_kill_are_sent_to_the_case_nemesis() -> None:
    done = nemesis("--hosts", "a,b", "--for", "1s", "pause etcd")
    assert (done.returncode, done.stderr.strip()) == (
        2,
        "phalanx-nemesis: pause is a case's nemesis fault (nemesis: {faults: [pause NAME]}), "
        "not phalanx-nemesis's",
    )


def test_one_host_is_not_enough() -> None:
    done = nemesis("--hosts", "a", "--for", "1s", "isolate-random")
    assert done.stderr.strip() == "phalanx-nemesis: a nemesis needs at least two hosts"
