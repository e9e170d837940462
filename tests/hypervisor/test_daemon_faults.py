"""Network faults on VMs that a `phalanx hypervisor` daemon runs, for a real
`phalanx serve`: a stage isolates one VM (`phalanx-net isolate`, asked of
the daemon over the wire and cut on its bridge), neither VM reaches the
other; the next case finds the network healed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from phalanx.providers import netns
from tests.hypervisor.test_daemon import start_hypervisor
from tests.service.test_serve import make_repo, start, stop, user_token, wait_run
from tests.vms import BOOT, QEMU_MISSING

ROOT = not netns.lacking_capabilities("CAP_NET_ADMIN")

PAIR = """name: pair
provider: qemu
hosts:
  - {name: vm0.flt.test, ram_size: 256M}
  - {name: vm1.flt.test, ram_size: 256M}
"""
# Each stage fails unless what it sees is what the fault should make.
CUT = """if [ "$(hostname -f)" = vm0.flt.test ]; then
    phalanx-net isolate vm1.flt.test || exit 1
    phalanx-send cut 1
    peer=vm1.flt.test
else
    phalanx-wait cut --timeout 120 >/dev/null || exit 1
    peer=vm0.flt.test
fi
if /run/phalanx/busybox ping -c 1 -w 3 $peer >/dev/null; then
    echo "still reached $peer"
    exit 1
fi
echo "cut off from $peer"
"""
HEALED = """for peer in vm0.flt.test vm1.flt.test; do
    if [ "$(hostname -f)" != $peer ]; then
        /run/phalanx/busybox ping -c 1 -w 20 $peer >/dev/null || exit 1
        echo "pinged $peer"
    fi
done
"""


def fault_repo(root: Path) -> Path:
    make_repo(root)
    (root / "clusters" / "pair.yaml").write_text(PAIR)
    suite = root / "test-suites" / "cutheal"
    for name, script in (("cut", CUT), ("healed", HEALED)):
        (suite / "tc" / name).mkdir(parents=True)
        (suite / "tc" / name / "run.sh").write_text(script)
    (suite / "suite.yaml").write_text("cluster: pair\ntests: [cut, healed]\n")
    return root


@pytest.mark.skipif(
    QEMU_MISSING is not None or not ROOT,
    reason=QEMU_MISSING or "the daemon's VMs are on a bridge only as root (CAP_NET_ADMIN)",
)
@pytest.mark.timeout(BOOT * 3)
def test_a_daemons_vms_are_isolated_then_healed_through_the_wire(tmp_path: Path) -> None:
    env = {"PHALANX_CONNECT_TIMEOUT": str(BOOT), "PHALANX_HEARTBEAT_TIMEOUT": "20"}
    served = start(tmp_path, fault_repo(tmp_path / "defs"), tmp_path / "data", env=env)
    daemon: subprocess.Popen[str] | None = None
    try:
        operator = user_token(served, "otto", "operator")
        daemon = start_hypervisor(served, tmp_path, "hv1")
        with served.client(operator) as client:
            run = client.post("/api/suites/cutheal/runs").json()["id"]
            done = wait_run(client, run, ("passed", "failed", "error"), within=BOOT * 2)
            assert done["status"] == "passed", (done, served.log.read_text()[-3000:])
            cases = {c["name"]: c["status"] for c in done["cases"]}
            assert cases == {"cut": "passed", "healed": "passed"}
            # The VMs' records and consoles came back from the daemon with
            # the run: the document and the page show its machines as they
            # do for VMs of the embedded hypervisor.
            assert sorted(done["vms"]) == ["vm0.flt.test", "vm1.flt.test"]
            vm0 = done["vms"]["vm0.flt.test"]
            assert vm0["network"]["mode"] == "bridge", vm0
            console = client.get(f"/runs/{run}/files/{vm0['console']}")
            assert console.status_code == 200
            assert "reboot: Power down" in console.text  # its last words
            assert "Machines" in client.get(f"/runs/{run}").text
        # The VMs were on the daemon's bridge (the faults' only place).
        vm = (tmp_path / "hv1").glob("*/hosts/vm0.flt.test/vm.json")
        assert '"mode": "bridge"' in next(vm).read_text()
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(60)
        stop(served)
