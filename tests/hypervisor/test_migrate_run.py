"""`phalanx-vm migrate` from a stage, through a run on the embedded
hypervisor (what `phalanx run` does): the VM moves itself while its stage
waits, the guest carries on (its uptime, a later case on it), refusals come
back as the stage's failure with the reason, and nothing is left after the
run. On local hosts, the request is refused saying why."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from phalanx.coordinator.runs import RunOptions, run_local
from phalanx.model import Case, Cluster, Host, Script, Status, Suite
from phalanx.providers.vmimage import Image, RootDisk
from tests.coordinator.runhelpers import case, output, suite
from tests.processes import alive
from tests.providers.test_qemu_disk import BOOT, MISSING, _nothing_left

needs_vm = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
HOST = "vm0.xmig.test"

SELF = """echo "before $(cut -d' ' -f1 /proc/uptime)"
phalanx-vm migrate
echo "after $(cut -d' ' -f1 /proc/uptime)"
"""
# Refusals: the command fails, saying why, and the stage goes on.
REFUSED = """phalanx-vm migrate nosuch.host 2>&1 && exit 1
phalanx-vm migrate --to hv9 2>&1 && exit 1
python=$(head -1 "$(command -v phalanx-vm)" | cut -c3-)  # the agent's own Python
"$python" -c 'import phalanx.vm as v
try:
    v.migrate("nosuch.host")
except v.VmError as e:
    print("python:", e)
else:
    raise SystemExit(1)'
"""


@needs_vm
@pytest.mark.timeout(BOOT + 240)
async def test_a_stage_migrates_its_own_vm_and_the_guest_carries_on(
    tmp_path: Path, vm_images: tuple[Image, RootDisk]
) -> None:
    run_id = f"vm-xmig-{uuid.uuid4().hex[:8]}"
    the_suite = Suite(
        name="xmig",
        cluster=Cluster(
            name="xmig", hosts=(Host(name=HOST, ram_size="256M"),), provider="qemu", vm_root="disk"
        ),
        cases=(
            Case(name="self", stages={"run": Script(text=SELF)}),
            Case(name="refused", stages={"run": Script(text=REFUSED)}),
            Case(name="later", stages={"run": Script(text="cut -d' ' -f1 /proc/uptime")}),
        ),
        timeout=BOOT,
    )
    options = RunOptions(
        results=tmp_path / "results", heartbeat_timeout=30, connect_timeout=BOOT, run_id=run_id
    )
    result, folder = await run_local(the_suite, options)

    assert result.status is Status.PASSED, (result.reason, result.cases)
    said = output(folder, result, "self", "run", HOST)
    lines = said.splitlines()
    assert lines[0].startswith("before ") and lines[-1].startswith("after "), said
    assert f"phalanx-vm: {HOST} migrated on embedded in" in said
    before, after = float(lines[0].split()[1]), float(lines[-1].split()[1])
    assert after > before  # the same guest: its clock carries on
    later = float(output(folder, result, "later", "run", HOST))
    assert later > after
    refused = output(folder, result, "refused", "run", HOST)
    assert f"no host 'nosuch.host' in this run (its hosts: {HOST})" in refused
    assert "no hypervisor 'hv9' is connected (connected: none)" in refused
    assert "python: phalanx.vm.migrate: no host 'nosuch.host'" in refused
    record = json.loads((folder / "hosts" / HOST / "vm.json").read_text())
    assert [m["mode"] for m in record["migrations"]] == ["tcp"]
    assert record["migrations"][0]["downtime_ms"] is not None
    pid = int((folder / "hosts" / HOST / "qemu.pid").read_text())
    assert not alive(pid)
    await _nothing_left(folder, run_id, [pid])


async def test_migrating_a_local_host_is_refused_saying_why(tmp_path: Path) -> None:
    the_suite = suite(case("ask", run="phalanx-vm migrate 2>&1 || echo status $?"), n=1, prefix="l")
    options = RunOptions(results=tmp_path / "results", provider="local")
    result, folder = await run_local(the_suite, options)

    assert result.status is Status.PASSED, result.reason
    said = output(folder, result, "ask", "run", "l0.phalanx.test")
    assert (
        "phalanx-vm: live migration needs VMs (provider: qemu); this run's hosts are local hosts"
        in said
    )
    assert "status 1" in said
