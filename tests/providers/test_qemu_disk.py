"""The qemu provider's VMs on root disks, through real runs under TCG: a VM
live-migrated while a stage runs in it (the guest and the stage carry on),
and `revert: case` undoing what a case wrote. Root or not: on a bridge
(each VM with a spare tap to migrate to) or on user-mode networking."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest

from phalanx.coordinator.runs import RunOptions, run_local
from phalanx.events import Event, HostOutput
from phalanx.model import Case, Cluster, Host, Script, Status, Suite
from phalanx.providers import bridge, netns, qemuvm
from phalanx.providers import qemu as qemu_module
from phalanx.providers.vmimage import Image, RootDisk
from tests.coordinator.runhelpers import output
from tests.processes import alive
from tests.vms import vm_missing, with_images

MISSING = vm_missing()
needs_qemu = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
BOOT = 240
HOST = "vm0.disk.test"
ROOT = not netns.lacking_capabilities("CAP_NET_ADMIN")


def _suite(cases: tuple[Case, ...], **cluster: str) -> Suite:
    hosts = (Host(name=HOST, ram_size="256M"),)
    return Suite(
        name="disk",
        cluster=Cluster(name="disk", hosts=hosts, provider="qemu", **cluster),  # type: ignore[arg-type]
        cases=cases,
        timeout=BOOT,
    )


async def _nothing_left(folder: Path, run_id: str, pids: list[int]) -> None:
    """No QEMU, no seed or overlay, no tap or bridge of the run is left."""
    assert not any(alive(pid) for pid in pids), pids
    for parent in (qemuvm.PRIVATE_PARENT, Path(os.environ.get("TMPDIR", "/tmp"))):
        assert not list(parent.glob(f"phalanx-qemu-{run_id[-8:]}-*")), parent
    if ROOT:
        mark = f"phx{netns.label(run_id)}"
        assert [link for link in await bridge.links() if link.startswith(mark)] == []


# The stage that the VM is migrated under: the guest's uptime before, a
# sleep the migration happens in, its uptime after.
ACROSS = """echo "before $(cut -d' ' -f1 /proc/uptime)"
sleep 25
echo "after $(cut -d' ' -f1 /proc/uptime)"
"""


@needs_qemu
@pytest.mark.timeout(BOOT + 180)
async def test_a_vm_migrates_while_its_stage_runs_and_the_guest_carries_on(
    tmp_path: Path, vm_images: tuple[Image, RootDisk], monkeypatch: pytest.MonkeyPatch
) -> None:
    providers = with_images(monkeypatch, vm_images)
    migrations: list[asyncio.Task[float]] = []
    pids: list[int] = []
    ended: list[bool] = []

    def migrate_when_sleeping(event: Event) -> None:
        if not isinstance(event, HostOutput) or event.case != "across":
            return
        if b"before" in event.data and not migrations:
            pids.append(providers[0].vms[HOST].process.pid)
            migrations.append(asyncio.ensure_future(providers[0].migrate(HOST, "tcp")))
        if b"after" in event.data:
            ended.append(bool(migrations) and migrations[0].done())

    suite = _suite(
        (
            Case(name="across", stages={"run": Script(text=ACROSS)}),
            Case(name="later", stages={"run": Script(text="cut -d' ' -f1 /proc/uptime")}),
        ),
        vm_root="disk",
    )
    run_id = f"vm-migrate-{uuid.uuid4().hex[:8]}"
    options = RunOptions(
        results=tmp_path / "results", heartbeat_timeout=20, connect_timeout=BOOT, run_id=run_id
    )
    result, folder = await run_local(suite, options, [migrate_when_sleeping])

    assert result.status is Status.PASSED, result.reason
    assert migrations and migrations[0].result() > 0
    assert ended == [True]  # the migration was over while the stage still ran
    said = output(folder, result, "across", "run", HOST).split()
    assert said[0] == "before" and said[2] == "after"
    before, after = float(said[1]), float(said[3])
    assert after >= before + 25  # the same guest, its clock carrying on
    later = float(output(folder, result, "later", "run", HOST))
    assert later > after
    record = json.loads((folder / "hosts" / HOST / "vm.json").read_text())
    assert record["root"] == "disk"
    assert [m["mode"] for m in record["migrations"]] == ["tcp"]
    pids.append(int((folder / "hosts" / HOST / "qemu.pid").read_text()))
    assert pids[0] != pids[1]  # qemu.pid names the QEMU the guest ended in
    if record["network"]["mode"] == "bridge":  # it moved to its spare tap
        assert record["network"]["tap"].startswith(f"phx{netns.label(run_id)}s")
    await _nothing_left(folder, run_id, pids)


WRITE = "echo one > /root/marker && cat /root/marker"
CHECK = "if [ -e /root/marker ]; then echo found; else echo gone; fi"


@needs_qemu
@pytest.mark.timeout(BOOT + 180)
async def test_revert_case_restores_the_vm_before_each_case(
    tmp_path: Path, vm_images: tuple[Image, RootDisk], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Case 1 writes a file on the VM's root disk; case 2, on the VM as
    it was booted, does not find it; both cases' results are recorded, and
    the agent replaced by the restore is not an agent lost."""
    with_images(monkeypatch, vm_images)
    suite = _suite(
        (
            Case(name="write", stages={"run": Script(text=WRITE)}),
            Case(name="check", stages={"run": Script(text=CHECK)}),
        ),
        revert="case",
    )
    run_id = f"vm-revert-{uuid.uuid4().hex[:8]}"
    options = RunOptions(
        results=tmp_path / "results", heartbeat_timeout=20, connect_timeout=BOOT, run_id=run_id
    )
    result, folder = await run_local(suite, options)

    assert result.status is Status.PASSED, result.reason
    assert [c.status for c in result.cases] == [Status.PASSED, Status.PASSED]
    assert output(folder, result, "write", "run", HOST) == "one\n"
    assert output(folder, result, "check", "run", HOST) == "gone\n"
    record = json.loads((folder / "hosts" / HOST / "vm.json").read_text())
    assert record["root"] == "disk"
    assert record["boot"] == "template"  # restored from one, then snapshotted waiting for go
    # One snapshot once booted; one restore, before the second case only.
    assert [(s["op"], s["tag"]) for s in record["snapshots"]] == [
        ("savevm", qemu_module.REVERT_TAG),
        ("loadvm", qemu_module.REVERT_TAG),
    ]
    assert record["ended_by"] == "itself"
    await _nothing_left(folder, run_id, [int((folder / "hosts" / HOST / "qemu.pid").read_text())])


async def test_revert_on_hosts_that_cannot_be_snapshotted_is_a_provisioning_error(
    tmp_path: Path,
) -> None:
    """No VM needed: local hosts have no snapshots to go back to."""
    hosts = (Host(name="a.local.test"),)
    suite = Suite(
        name="local",
        cluster=Cluster(name="local", hosts=hosts, provider="local", revert="case"),
        cases=(Case(name="never", stages={"run": Script(text="true")}),),
    )
    result, _ = await run_local(suite, RunOptions(results=tmp_path / "results"))
    assert result.status is Status.ERROR
    assert result.reason == (
        "provisioning failed: revert: case needs VMs that can be snapshotted (provider: qemu); "
        "this run's hosts are local hosts"
    )
