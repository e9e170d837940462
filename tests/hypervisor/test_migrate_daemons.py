"""A VM moves from one `phalanx hypervisor` to another, both real daemons
(each with its own folder) serving a real `phalanx serve`: a stage runs
`phalanx-vm migrate --to hv2` in the VM, the guest carries on (its uptime),
its disk's content came along, the service's hypervisor report shows the
VM running on hv2, the run
passes, the source QEMU is gone at once, and nothing of the run is left on
either side afterwards (QEMUs, taps, folders)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from phalanx.providers import bridge
from phalanx.providers import qemu as qemu_module
from tests.hypervisor.test_daemon import start_hypervisor, wait_for
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
    disks: [{{name: scratch, size: 32M, mount_point: /mnt/scratch}}]
"""
# hv2 connects once the run is under way: until then the request is refused
# naming it (and the run is on hv1, the only hypervisor when it started).
MOVE = """@diskmounts@
echo written before > /mnt/scratch/file && sync
echo "before $(cut -d' ' -f1 /proc/uptime)"
for i in $(seq 120); do
    if phalanx-vm migrate --to hv2 2>err; then break; fi
    grep -q "no hypervisor 'hv2' is connected" err || { cat err; exit 1; }
    sleep 1
done
echo "after $(cut -d' ' -f1 /proc/uptime)"
echo written after >> /mnt/scratch/file && sync
sleep 20  # while the test reads the hypervisors' report
echo "still $(cut -d' ' -f1 /proc/uptime)"
"""


def repo(root: Path) -> Path:
    make_repo(root)
    (root / "clusters" / "vm.yaml").write_text(VM)
    (root / "test-suites" / "move" / "tc" / "a").mkdir(parents=True)
    (root / "test-suites" / "move" / "tc" / "a" / "run.sh").write_text(MOVE)
    (root / "test-suites" / "move" / "tc" / "b").mkdir(parents=True)
    (root / "test-suites" / "move" / "tc" / "b" / "run.sh").write_text(
        "echo later $(cut -d' ' -f1 /proc/uptime)\n"
        # From the disk, not the guest's cache: the mirror copied it whole.
        "sync && echo 3 > /proc/sys/vm/drop_caches && cat /mnt/scratch/file\n"
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
def test_a_vm_moves_to_another_hypervisor_and_carries_on(tmp_path: Path) -> None:
    env = {"PHALANX_CONNECT_TIMEOUT": str(BOOT), "PHALANX_HEARTBEAT_TIMEOUT": "20"}
    served = start(tmp_path, repo(tmp_path / "defs"), tmp_path / "data", env=env)
    daemons: list[subprocess.Popen[str]] = []
    links_before = set()
    try:
        links_before = set(_links())
        operator = user_token(served, "otto", "operator")
        daemons.append(start_hypervisor(served, tmp_path, "hv1"))
        wait_for("hv1 connects", lambda: "hypervisor hv1 connected" in served.log.read_text(), BOOT)
        with served.client(operator) as client:
            run_id = client.post("/api/suites/move/runs").json()["id"]
            wait_for(
                "the VM runs on hv1",
                lambda: vms_on(client, "hv1").get(HOST) == "running",
                BOOT,
            )
            source_pid = int(next((tmp_path / "hv1").glob(f"*/hosts/{HOST}/qemu.pid")).read_text())
            daemons.append(start_hypervisor(served, tmp_path, "hv2"))
            wait_for(
                "the VM runs on hv2",
                lambda: vms_on(client, "hv2").get(HOST) == "running",
                BOOT,
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
        # Restored from hv1's template, whose layer of the root disk hv2 has
        # not: it was copied into the VM's own overlay before the mirror.
        assert gone["boot"] == "template"
        assert gone["migrations"][-1]["to"] == "hv2"
        came = json.loads(next((tmp_path / "hv2").glob(f"*/hosts/{HOST}/vm.json")).read_text())
        assert came["arrived_from"] == "hv1"
        assert came["migrations"][-1]["from"] == "hv1"
        assert came["migrations"][-1]["downtime_ms"] is not None
        dest_pid = int(next((tmp_path / "hv2").glob(f"*/hosts/{HOST}/qemu.pid")).read_text())
        wait_for("the destination QEMU ends", lambda: not alive(dest_pid), 60)
        # Nothing of the run left on either side.
        assert not list(qemu_module.PRIVATE_PARENT.glob(f"phalanx-in-{run_id[-8:]}-*"))
        assert not list(qemu_module.PRIVATE_PARENT.glob(f"phalanx-qemu-{run_id[-8:]}-*"))
        assert {link for link in _links() if link.startswith("pxm")} <= links_before
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
