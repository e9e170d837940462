"""The etcd example, run as a user runs it: a 3-node etcd cluster on netns
hosts, a client on each member recording writes and reads with
`phalanx-op` while `phalanx-nemesis` partitions the cluster and heals it,
twice; the merged
history is linearizable. Needs root, `ip netns` and Debian's etcd-server
and etcd-client; without them it skips, saying why."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.providers import bridge
from phalanx.providers.netns import missing_privileges

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "histories"


def _why_not() -> str | None:
    if (problem := missing_privileges()) is not None:
        return problem
    if bridge.tools_missing():
        return f"missing {', '.join(bridge.tools_missing())}"
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        return "no etcd/etcdctl (apt-get install etcd-server etcd-client)"
    return None


WHY_NOT = _why_not()


@pytest.mark.skipif(WHY_NOT is not None, reason=f"etcd example: {WHY_NOT}")
def test_etcd_under_partitions_gives_a_linearizable_history(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "phalanx",
            "run",
            str(EXAMPLE),
            "-s",
            "etcd_register",
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
    assert done.returncode == 0, done.stdout + done.stderr
    (case,) = json.loads((tmp_path / "results.json").read_text())["cases"]
    assert case["status"] == "passed"
    logs = sorted((tmp_path / "results").glob("*/cases/register/run/e*.etcd.test.log"))
    texts = [log.read_text() for log in logs]
    assert "history valid (register, 1 key(s))" in texts[0]  # e1 checks
    # The nemesis (seed 7) partitioned the cluster twice, and healed it.
    nemesis = re.findall(r"nemesis: (\w+)", texts[0])
    assert nemesis == ["partition", "heal", "partition", "heal"]
    # The partitions made some operations time out: they are info.
    info = [re.search(r"writes and reads on e\d, (\d+) of them info", t) for t in texts]
    assert sum(int(found[1]) for found in info if found) >= 1, texts
