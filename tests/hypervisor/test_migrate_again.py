"""A VM moves on and back between two real `phalanx hypervisor` daemons
serving a real `phalanx serve`, in one stage: hv1 → hv2, beside itself on
hv2 (a new QEMU, a new tap), hv2 → hv1. The guest carries on (its uptime, a
file on its root disk); `phalanx-net slow` and heal reach it wherever it
runs (netem on its eth0, as its own kernel shows it): a slow made on hv1
holds on hv2 and is healed there, one made on hv2 holds back on hv1 and is
healed there. Each side's vm.json records the moves; nothing is left
(QEMUs, taps, private folders)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from phalanx.providers import netns, qemuvm
from tests.eventually import eventually
from tests.hypervisor.test_daemon import start_hypervisor
from tests.hypervisor.test_migrate_daemons import _links, _stage_output, vms_on
from tests.processes import alive
from tests.service.test_serve import make_repo, start, stop, user_token, wait_run
from tests.vms import BOOT, QEMU_MISSING

ROOT = not netns.lacking_capabilities("CAP_NET_ADMIN")
HOST = "vm1.xmig.test"
VM = f"""name: vm
provider: qemu
vm_root: disk
hosts:
  - name: {HOST}
    ram_size: 256M
"""
SHOW = (
    "echo \"$1 $(/usr/sbin/tc qdisc show dev eth0 | grep -o 'netem.*delay [0-9.]*ms'"
    " || echo 'no netem')\""
)
# hv2 connects once the VM runs on hv1 (else the run could start there).
AGAIN = f"""show() {{ {SHOW}; }}
up() {{ echo "$1 $(cut -d' ' -f1 /proc/uptime)"; }}
echo written before > /root/file && sync
up before
phalanx-net slow {HOST} 200ms || exit 1
show slowed-on-hv1
for i in $(seq 120); do
    if phalanx-vm migrate --to hv2 2>err; then break; fi
    grep -q "no hypervisor 'hv2' is connected" err || {{ cat err; exit 1; }}
    sleep 1
done
up on-hv2
show came-to-hv2
phalanx-net heal || exit 1
show healed-on-hv2
phalanx-vm migrate || exit 1
up beside-on-hv2
phalanx-net slow {HOST} 300ms || exit 1
show slowed-on-hv2
phalanx-vm migrate --to hv1 || exit 1
up back-on-hv1
show came-back
echo written after >> /root/file
sync && echo 3 > /proc/sys/vm/drop_caches && cat /root/file
phalanx-net heal || exit 1
show healed-on-hv1
"""


def repo(root: Path) -> Path:
    make_repo(root)
    (root / "clusters" / "vm.yaml").write_text(VM)
    (root / "test-suites" / "again" / "tc" / "a").mkdir(parents=True)
    (root / "test-suites" / "again" / "tc" / "a" / "run.sh").write_text(AGAIN)
    (root / "test-suites" / "again" / "suite.yaml").write_text("cluster: vm\ntests: [a]\n")
    return root


@pytest.mark.skipif(
    QEMU_MISSING is not None or not ROOT,
    reason=QEMU_MISSING or "slow and heal need the VMs on a bridge: root (CAP_NET_ADMIN)",
)
@pytest.mark.timeout(BOOT * 3)
def test_a_vm_moves_on_and_back_and_slow_and_heal_follow_it(tmp_path: Path) -> None:
    env = {"PHALANX_CONNECT_TIMEOUT": str(BOOT), "PHALANX_HEARTBEAT_TIMEOUT": "20"}
    served = start(tmp_path, repo(tmp_path / "defs"), tmp_path / "data", env=env)
    daemons: list[subprocess.Popen[str]] = []
    try:
        operator = user_token(served, "otto", "operator")
        daemons.append(start_hypervisor(served, tmp_path, "hv1"))
        with served.client(operator) as client:
            run_id = client.post("/api/suites/again/runs").json()["id"]
            eventually(
                lambda: vms_on(client, "hv1").get(HOST) == "running",
                within=BOOT,
                what="the VM runs on hv1",
            )
            pid_file = next((tmp_path / "hv1").glob(f"*/hosts/{HOST}/qemu.pid"))
            first_pid = int(pid_file.read_text())
            daemons.append(start_hypervisor(served, tmp_path, "hv2"))
            done = wait_run(client, run_id, ("passed", "failed", "error"), within=BOOT * 2)
            detail = json.dumps(done)[-3000:] + _stage_output(tmp_path, "a")[-2000:]
            assert done["status"] == "passed", detail + served.log.read_text()[-3000:]
        said = dict(line.split(" ", 1) for line in _stage_output(tmp_path, "a").splitlines()
                    if " " in line)  # fmt: skip
        uptimes = [float(said[k]) for k in ("before", "on-hv2", "beside-on-hv2", "back-on-hv1")]
        assert uptimes == sorted(uptimes), said  # one guest, its clock carrying on
        assert re.fullmatch(r"netem .* delay 200ms", said["slowed-on-hv1"]), said
        assert said["came-to-hv2"] == said["slowed-on-hv1"]  # the slow came with it
        assert said["healed-on-hv2"] == "no netem"  # healed where it runs now
        assert re.fullmatch(r"netem .* delay 300ms", said["slowed-on-hv2"]), said
        assert said["came-back"] == said["slowed-on-hv2"]
        assert said["healed-on-hv1"] == "no netem"
        text = _stage_output(tmp_path, "a")
        assert "written before\nwritten after\n" in text  # its root disk came along, twice
        assert f"phalanx-vm: {HOST} migrated to hypervisor hv2 in" in text
        assert f"phalanx-vm: {HOST} migrated to hypervisor hv1 in" in text
        # Each side's record of the moves: hv2's of the VM that came and went on,
        # hv1's of the one that came back (in the folder of the one that left).
        there = json.loads(next((tmp_path / "hv2").glob(f"*/hosts/{HOST}/vm.json")).read_text())
        assert (there["arrived_from"], there["ended_by"]) == ("hv1", "migrated")
        back = json.loads(pid_file.with_name("vm.json").read_text())
        assert back["arrived_from"] == "hv2" and back["ended_by"] != "migrated"
        moves = [(m.get("from"), m.get("to")) for m in back["migrations"]]
        assert moves == [("hv1", "hv2"), (None, None), ("hv2", "hv1")], back["migrations"]
        assert there["migrations"][:2] == back["migrations"][:2]  # its history came along
        assert there["migrations"][2]["to"] == "hv1"
        # Nothing left: its QEMUs, its taps on both sides, its private folders.
        pids = [first_pid, int(pid_file.read_text())]
        pids += [int(p.read_text()) for p in (tmp_path / "hv2").glob(f"*/hosts/{HOST}/qemu.pid")]
        eventually(lambda: not any(alive(p) for p in pids), within=60, what="every QEMU of it ends")
        taps = {there["network"]["tap"], back["network"]["tap"]}
        taps |= set(re.findall(r"on tap \S+ \(was (\S+)\)", (tmp_path / "hv2.log").read_text()))
        assert len(taps) == 3 and all(t.startswith("pxm") for t in taps), taps
        assert not taps & set(_links())
        assert not list(qemuvm.PRIVATE_PARENT.glob(f"phalanx-in-{run_id[-8:]}-*"))
        assert not list(qemuvm.PRIVATE_PARENT.glob(f"phalanx-qemu-{run_id[-8:]}-*"))
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.terminate()
                daemon.wait(60)
        stop(served)
