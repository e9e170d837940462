"""`phalanx hypervisor` in its own process serving a `phalanx serve`: a
qemu cluster (one VM, `keep: true`) runs through the service on the
hypervisor and passes; the next run reuses the same VM (the same QEMU
process); killing the hypervisor mid-run makes that run `error` naming it
within the heartbeat timeout, and the VM ends. One boot for all three: a
boot under TCG on a shared machine takes a while."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.eventually import eventually
from tests.processes import alive, gone
from tests.service.test_serve import Served, make_repo, start, stop, user_token, wait_run
from tests.vms import BOOT, needs_qemu

HEARTBEAT = 5

VM = "name: vm\nprovider: qemu\nkeep: true\nhosts:\n  - {name: vm1.t.test, ram_size: 256M}\n"
SUITES = {
    "vmhello": "echo hello from @slavename@ in $(hostname -f)\n",
    "vmlong": "echo started; sleep 300\n",
}


def vm_repo(root: Path) -> Path:
    make_repo(root)
    (root / "clusters" / "vm.yaml").write_text(VM)
    for name, script in SUITES.items():
        (root / "test-suites" / name / "tc" / "a").mkdir(parents=True)
        (root / "test-suites" / name / "tc" / "a" / "run.sh").write_text(script)
        (root / "test-suites" / name / "suite.yaml").write_text("cluster: vm\ntests: [a]\n")
    return root


def start_hypervisor(
    served: Served, tmp: Path, name: str, cache: Path | None = None
) -> subprocess.Popen[str]:
    """`phalanx hypervisor` NAME for `served`, in `tmp`/NAME (its log
    `tmp`/NAME.log), once the service says it is connected."""
    (tmp / f"{name}.token").write_text(served.admin("token", "create", name, "--hypervisor"))
    log = (tmp / f"{name}.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "phalanx.cli", "hypervisor", "--coordinator", served.url,
         "--token-file", str(tmp / f"{name}.token"), "--name", name,
         "--workdir", str(tmp / name), "-v"],
        stdout=log, stderr=log, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
        | ({"XDG_CACHE_HOME": str(cache)} if cache is not None else {}),
    )  # fmt: skip
    try:
        connected = f"hypervisor {name} connected"
        eventually(
            lambda: connected in served.log.read_text(), within=BOOT, what=f"{name} connects"
        )
    except BaseException:
        daemon.kill()
        daemon.wait(30)
        raise
    return daemon


@needs_qemu
def test_a_hypervisor_daemon_runs_a_kept_vm_cluster_for_the_service_and_its_loss_fails_the_run(
    tmp_path: Path,
) -> None:
    env = {"PHALANX_CONNECT_TIMEOUT": "120", "PHALANX_HEARTBEAT_TIMEOUT": str(HEARTBEAT)}
    served = start(tmp_path, vm_repo(tmp_path / "defs"), tmp_path / "data", env=env)
    daemon: subprocess.Popen[str] | None = None
    try:
        operator = user_token(served, "otto", "operator")
        workdir = tmp_path / "hv1"
        daemon = start_hypervisor(served, tmp_path, "hv1")
        with served.client(operator) as client:
            first = client.post("/api/suites/vmhello/runs").json()["id"]
            done = wait_run(client, first, ("passed", "failed", "error"), within=BOOT * 2)
            assert done["status"] == "passed", (done, served.log.read_text()[-3000:])
            pids = list(workdir.glob("*/hosts/vm1.t.test/qemu.pid"))
            assert len(pids) == 1  # on the hypervisor, under its own folder
            pid = int(pids[0].read_text())
            assert alive(pid)
            # keep: true — the next run of the cluster boots nothing
            second = client.post("/api/suites/vmhello/runs").json()["id"]
            done = wait_run(client, second, ("passed", "failed", "error"), within=BOOT)
            assert done["status"] == "passed", done
            assert list(workdir.glob("*/hosts/vm1.t.test/qemu.pid")) == pids
            assert alive(pid)
            page = client.get("/clusters").text
            assert 'on hypervisor <a href="#hypervisor-hv1">hv1</a>, kept up' in page
            assert '<span class="state state-running">vm1.t.test running</span>' in page
            # the hypervisor dies mid-run
            third = client.post("/api/suites/vmlong/runs").json()["id"]
            # Killed while its stage runs on the VM: once the stage said so.
            where = {"case": "a", "stage": "run", "host": "vm1.t.test"}
            eventually(
                lambda: "started" in client.get(f"/api/runs/{third}/output", params=where).text,
                within=BOOT,
                what="the long stage started",
            )
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
            killed = time.monotonic()
            done = wait_run(client, third, ("passed", "failed", "error"), within=HEARTBEAT * 4)
            assert time.monotonic() - killed < HEARTBEAT * 3
            assert done["status"] == "error", done
            assert "hypervisor hv1 lost" in str(done), done
            assert 'class="badge st-failed">lost' in client.get("/clusters").text
            # its VM's agent was refused: the guest powers off, QEMU ends
            assert gone(pid, 120)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(60)
        stop(served)
