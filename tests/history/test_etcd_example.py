"""The etcd example, run as a user runs it: a 3-node etcd cluster on netns
hosts, a client on each member recording writes and reads with
`phalanx-op` while the case's nemesis partitions the cluster (or pauses a
member's etcd) and heals it on the schedule of its seed; the case's
history, from all three clients on the coordinator's clock, is
linearizable. Needs root, `ip netns` and Debian's etcd-server
and etcd-client; without them it skips, saying why. The same example runs
on container hosts (`--provider podman`, the image with etcd built from
Debian's mirror)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.history.nemesis import parse_fault, schedule
from phalanx.providers import bridge
from phalanx.providers.containerimage import build
from phalanx.providers.containers import engine
from phalanx.providers.netns import missing_privileges
from tests.providers.containers import needs_podman

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "histories"
HOSTS = {"e1.etcd.test", "e2.etcd.test", "e3.etcd.test"}
# What the example's cluster names for container hosts, and what it holds.
ETCD_IMAGE = "phalanx-etcd"
ETCD_PACKAGES = ("etcd-server", "etcd-client")
FAULTS = ["partition-halves", "partition-random", "isolate-random", "pause etcd"]


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
    _run_and_check(tmp_path)


@needs_podman
def test_etcd_on_container_hosts_under_partitions_gives_a_linearizable_history(
    tmp_path: Path,
) -> None:
    """The same example on container hosts, as its README says: the image
    built (or found) with etcd and tagged as the cluster names it, then
    `--provider podman`."""
    asyncio.run(build(engine(), ETCD_PACKAGES, tag=ETCD_IMAGE))
    _run_and_check(tmp_path, "--provider", "podman")


def _run_and_check(tmp_path: Path, *options: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "phalanx",
            "run",
            str(EXAMPLE),
            "-s",
            "etcd_register",
            *options,
            "--plain",
            "--results",
            str(tmp_path / "results"),
            "--json",
            str(tmp_path / "results.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (case,) = json.loads((tmp_path / "results.json").read_text())["cases"]
    assert case["status"] == "passed", case["reason"]
    history = case["history"]
    assert (history["check"], history["valid"]) == ("register", True)
    assert history["verdict"] == "history valid (register, 1 key(s))"
    assert {e["host"] for e in history["events"] if e["process"] != "nemesis"} == HOSTS
    # The nemesis followed its seed's schedule: the same faults, in order.
    spec = [parse_fault(f) for f in FAULTS]
    planned = [s.what for s in schedule(spec, sorted(HOSTS), 2.0, 7, 120) if s.action == "start"]
    started = [
        e["value"].split(" (pid")[0]
        for e in history["events"]
        if e["process"] == "nemesis" and e["f"] == "start"
    ]
    assert len(started) >= 2
    assert started == planned[: len(started)]
    # Every fault healed, the last one when the stage ended at the latest.
    assert history["events"][-1]["f"] == "heal" or history["events"][-1]["process"] != "nemesis"
    assert history["nemesis_error"] is None
    # The faults made some operations time out: they are info.
    texts = [p.read_text() for p in (tmp_path / "results").glob("*/cases/register/run/e*.log")]
    info = [re.search(r"writes and reads on e\d, (\d+) of them info", t) for t in texts]
    assert sum(int(found[1]) for found in info if found) >= 1, texts
