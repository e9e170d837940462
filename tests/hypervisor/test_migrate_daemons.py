"""A VM moves from one `phalanx hypervisor` to another, both real daemons
(each with its own folder) serving a real `phalanx serve`: a stage runs
`phalanx-vm migrate --to hv2` in the VM, the guest carries on (its uptime),
its disk's content came along, the service's hypervisor report shows the
VM running on hv2, the run
passes, the source QEMU is gone at once, and nothing of the run is left on
either side afterwards (QEMUs, taps, folders)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from phalanx.providers import bridge, qemuvm
from tests.eventually import eventually
from tests.hypervisor.test_daemon import start_hypervisor
from tests.processes import alive
from tests.providers.test_qemu_disk import MISSING
from tests.service.test_serve import make_repo, start, stop, user_token, wait_run
from tests.vms import BOOT

needs_vm = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
HOST = "vm1.xmig.test"
VM = f"""name: vm
provider: qemu
vm_root: disk
hosts:
  - name: {HOST}
    ram_size: 256M
"""
# A user disk: its VM boots cold (a template has no disks), and the disk
# crosses whole.
SCRATCH = "    disks: [{name: scratch, size: 32M, mount_point: /mnt/scratch}]\n"
# hv2 connects once the run is under way: until then the request is refused
# naming it (and the run is on hv1, the only hypervisor when it started).
MOVE = """@diskmounts@
echo written before > {file} && sync
echo "before $(cut -d' ' -f1 /proc/uptime)"
for i in $(seq 120); do
    if phalanx-vm migrate --to hv2 2>err; then break; fi
    grep -q "no hypervisor 'hv2' is connected" err || { cat err; exit 1; }
    sleep 1
done
echo "after $(cut -d' ' -f1 /proc/uptime)"
echo written after >> {file} && sync
sleep 20  # while the test reads the hypervisors' report
echo "still $(cut -d' ' -f1 /proc/uptime)"
"""


def repo(root: Path, scratch: bool) -> Path:
    """The move suite; the file it writes on the user disk (`scratch`) or
    on the root disk."""
    file = "/mnt/scratch/file" if scratch else "/root/file"
    make_repo(root)
    (root / "clusters" / "vm.yaml").write_text(VM + (SCRATCH if scratch else ""))
    (root / "test-suites" / "move" / "tc" / "a").mkdir(parents=True)
    (root / "test-suites" / "move" / "tc" / "a" / "run.sh").write_text(MOVE.replace("{file}", file))
    (root / "test-suites" / "move" / "tc" / "b").mkdir(parents=True)
    (root / "test-suites" / "move" / "tc" / "b" / "run.sh").write_text(
        "echo later $(cut -d' ' -f1 /proc/uptime)\n"
        # From the disk, not the guest's cache: the mirror copied it whole.
        f"sync && echo 3 > /proc/sys/vm/drop_caches && cat {file}\n"
    )
    (root / "test-suites" / "move" / "suite.yaml").write_text("cluster: vm\ntests: [a, b]\n")
    return root


def vms_on(client: Any, name: str) -> dict[str, str]:
    for view in client.get("/api/hypervisors").json():
        if view["name"] == name:
            return {h: s for c in view["clusters"] for h, s in c["vms"].items()}
    return {}


@needs_vm
@pytest.mark.timeout(BOOT * 3)
@pytest.mark.parametrize("root_disk", ["shared", "own"])
def test_a_vm_moves_to_another_hypervisor_and_carries_on(tmp_path: Path, root_disk: str) -> None:
    """`shared`: both daemons find the one root disk in the image cache, so
    only the VM's overlay crosses (the VM restored from a template: the
    template's layer taken into it first), the file written on the root
    disk with it; `own`: hv2 has a root disk of its own (other bytes), so
    the VM's root disk crosses whole, and its user disk too."""
    env = {"PHALANX_CONNECT_TIMEOUT": str(BOOT), "PHALANX_HEARTBEAT_TIMEOUT": "20"}
    served = start(
        tmp_path, repo(tmp_path / "defs", scratch=root_disk == "own"), tmp_path / "data", env=env
    )
    daemons: list[subprocess.Popen[str]] = []
    try:
        operator = user_token(served, "otto", "operator")
        daemons.append(start_hypervisor(served, tmp_path, "hv1"))
        with served.client(operator) as client:
            run_id = client.post("/api/suites/move/runs").json()["id"]
            eventually(
                lambda: vms_on(client, "hv1").get(HOST) == "running",
                within=BOOT,
                what="the VM runs on hv1",
            )
            source_pid = int(next((tmp_path / "hv1").glob(f"*/hosts/{HOST}/qemu.pid")).read_text())
            cache = None if root_disk == "shared" else own_root_disk(tmp_path / "cache2")
            daemons.append(start_hypervisor(served, tmp_path, "hv2", cache=cache))
            eventually(
                lambda: vms_on(client, "hv2").get(HOST) == "running",
                within=BOOT,
                what="the VM runs on hv2",
            )
            assert HOST not in vms_on(client, "hv1")  # the report has it on hv2 only
            assert not alive(source_pid)  # the source QEMU ended with the migration
            done = wait_run(client, run_id, ("passed", "failed", "error"), within=BOOT)
            detail = json.dumps(done)[-3000:]
            assert done["status"] == "passed", detail + served.log.read_text()[-3000:]
        said = _stage_output(tmp_path, "a")
        lines = said.splitlines()
        assert lines[0].startswith("before "), said
        assert f"phalanx-vm: {HOST} migrated to hypervisor hv2 in" in said
        before = float(lines[0].split()[1])
        after = float(next(x for x in lines if x.startswith("after ")).split()[1])
        still = float(next(x for x in lines if x.startswith("still ")).split()[1])
        assert before < after < still  # one guest, its clock carrying on
        later_said = _stage_output(tmp_path, "b").splitlines()
        later = float(later_said[0].split()[1])
        assert later > still  # the next case ran on it, on hv2
        assert later_said[1:] == ["written before", "written after"]  # its disk came along
        # Each side's results: the source's record of the move, the destination's
        # of the arrival and how the VM ended.
        gone = json.loads(next((tmp_path / "hv1").glob(f"*/hosts/{HOST}/vm.json")).read_text())
        assert gone["ended_by"] == "migrated"
        # shared: restored from hv1's template, whose layer of the root disk
        # hv2 has not (it was taken into the VM's own overlay before the mirror).
        assert gone["boot"] == ("template" if root_disk == "shared" else "cold")
        assert gone["migrations"][-1]["to"] == "hv2"
        came = json.loads(next((tmp_path / "hv2").glob(f"*/hosts/{HOST}/vm.json")).read_text())
        assert came["arrived_from"] == "hv1"
        assert came["migrations"][-1]["from"] == "hv1"
        hv2_log = (tmp_path / "hv2.log").read_text()
        assert ("arrives with its root disk whole" in hv2_log) == (root_disk == "own"), hv2_log
        assert came["migrations"][-1]["downtime_ms"] is not None
        dest_pid = int(next((tmp_path / "hv2").glob(f"*/hosts/{HOST}/qemu.pid")).read_text())
        eventually(lambda: not alive(dest_pid), within=60, what="the destination QEMU ends")
        # Nothing of the run left on either side.
        assert not list(qemuvm.PRIVATE_PARENT.glob(f"phalanx-in-{run_id[-8:]}-*"))
        assert not list(qemuvm.PRIVATE_PARENT.glob(f"phalanx-qemu-{run_id[-8:]}-*"))
        tap = came["network"].get("tap")  # hv2's own, on the cluster's bridge
        assert tap is None or tap not in _links()
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.terminate()
                daemon.wait(60)
        stop(served)


def _links() -> list[str]:
    import asyncio

    return list(asyncio.run(bridge.links()))


def _stage_output(tmp: Path, case: str) -> str:
    found = list((tmp / "data").rglob(f"cases/{case}/run/{HOST}.log"))
    assert found, f"no output of case {case}"
    return found[0].read_text()


def own_root_disk(cache: Path) -> Path:
    """An XDG cache whose phalanx images are this machine's (hard links, so
    nothing is built) but for the root disk: a copy with a MiB more at its
    end, so other bytes, the same file system."""
    from phalanx.providers.vmimage import build_root_disk, cache_root

    mine = build_root_disk()  # what the daemons find: the same code, the same key
    ours = cache_root().parent
    theirs = cache / "phalanx"
    theirs.mkdir(parents=True)
    for name in ("wheelhouse", "kvm-probe.json"):
        if (ours / name).exists():
            subprocess.run(["cp", "-al", str(ours / name), str(theirs / name)], check=True)
    (theirs / "images").mkdir()
    for entry in (ours / "images").iterdir():
        if entry.is_dir() and not entry.name.startswith(("root-", ".")) and "-" not in entry.name:
            subprocess.run(
                ["cp", "-al", str(entry), str(theirs / "images" / entry.name)], check=True
            )
    copy = theirs / "images" / mine.path.name
    copy.mkdir()
    shutil.copy2(mine.path / "image.json", copy / "image.json")
    subprocess.run(
        ["cp", "--sparse=always", str(mine.disk), str(copy / "root.ext4")], check=True, timeout=300
    )
    with (copy / "root.ext4").open("ab") as disk:
        disk.truncate((copy / "root.ext4").stat().st_size + (1 << 20))
    return cache
