"""Root-disk VMs restored from a saved template (vmtemplate), through real
runs under TCG: each restored VM is its own host (name, address, MAC,
token, RNG, clock), on a bridge or on user-mode networking; a template
that cannot be built, or does not restore, leaves the VMs to boot cold."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from phalanx.coordinator.runs import RunOptions, run_local
from phalanx.model import Case, Cluster, Host, Script, Status, Suite
from phalanx.providers import netns, vmtemplate
from phalanx.providers.base import ProvisionError
from phalanx.providers.qemuargs import mac_address
from phalanx.providers.qemuimg import make_overlay
from phalanx.providers.vmimage import Image, RootDisk
from tests.coordinator.runhelpers import output
from tests.vms import vm_missing, with_images

MISSING = vm_missing()
needs_qemu = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
BOOT = 240
ROOT = not netns.lacking_capabilities("CAP_NET_ADMIN")

# What a host says about itself: who it is, where, its kernel's RNG, its clock.
IDENTITY = """echo "name $(hostname)"
echo "fqdn $(hostname -f)"
echo "mac $(cat /sys/class/net/eth0/address)"
echo "ip $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
echo "boot $(cat /proc/sys/kernel/random/boot_id)"
echo "random $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n')"
echo "clock $(date +%s)"
echo "token ${PHALANX_AGENT_TOKEN:-none}"
echo "env $(. /run/phalanx/vm.env && echo "$PHALANX_NAME")"
"""


def _suite(hosts: tuple[Host, ...], case: Case) -> Suite:
    return Suite(
        name="template",
        cluster=Cluster(name="template", hosts=hosts, provider="qemu", vm_root="disk"),
        cases=(case,),
        timeout=BOOT,
    )


def _said(text: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def _record(folder: Path, host: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((folder / "hosts" / host / "vm.json").read_text())
    return record


@needs_qemu
@pytest.mark.timeout(BOOT + 240)
@pytest.mark.parametrize("network", ["bridge", "user"] if ROOT else ["user"])
async def test_vms_restored_from_a_template_are_distinct_correctly_named_hosts(
    tmp_path: Path,
    vm_images: tuple[Image, RootDisk],
    monkeypatch: pytest.MonkeyPatch,
    network: str,
) -> None:
    monkeypatch.setenv("PHALANX_QEMU_NETWORK", network)
    with_images(monkeypatch, vm_images)
    hosts = (
        Host(name="vm0.tmpl.test", ram_size="256M"),
        Host(name="vm1.tmpl.test", ram_size="256M"),
    )
    suite = _suite(hosts, Case(name="who", stages={"run": Script(text=IDENTITY)}))
    if network == "bridge":  # the VMs reach each other by name (the MAC each guest took)
        reach = Case(name="reach", stages={"run": Script(text=f"ping -c 1 -W 20 {hosts[1].name}")})
        suite = Suite(name=suite.name, cluster=suite.cluster, cases=(*suite.cases, reach),
                      timeout=BOOT)  # fmt: skip
    options = RunOptions(
        results=tmp_path / "results",
        heartbeat_timeout=20,
        connect_timeout=BOOT,
        run_id=f"vm-tmpl-{uuid.uuid4().hex[:8]}",
    )
    before = time.time()
    result, folder = await run_local(suite, options)
    after = time.time()

    assert result.status is Status.PASSED, result.reason
    said = {h.name: _said(output(folder, result, "who", "run", h.name)) for h in hosts}
    for host in hosts:
        mine = said[host.name]
        record = _record(folder, host.name)
        assert record["boot"] == "template"
        assert record["network"]["mode"] == network
        assert mine["name"] == host.short_name and mine["fqdn"] == host.name
        assert mine["env"] == host.name  # what a cold boot's stage2 leaves, as it leaves it
        assert mine["mac"] == mac_address(host)
        assert mine["ip"] == record["network"]["address"]
        assert mine["token"] == "none"  # the agent keeps its token from its stages
        # The guest's clock is this machine's (it was saved long before).
        assert before - 5 <= int(mine["clock"]) <= after + 5
    first, second = (said[h.name] for h in hosts)
    if network == "bridge":  # each its own address on the cluster's bridge
        assert first["ip"] != second["ip"]
    assert first["boot"] != second["boot"]
    assert first["random"] != second["random"]
    assert first["mac"] != second["mac"]


@needs_qemu
@pytest.mark.timeout(BOOT + 120)
async def test_a_template_that_does_not_restore_is_discarded_and_the_vm_boots_cold(
    tmp_path: Path,
    vm_images: tuple[Image, RootDisk],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A template whose saved state is not QEMU's (a truncated or foreign
    file): the restoring QEMU fails, the VM boots cold and runs the case,
    and the template is gone from the cache."""
    monkeypatch.setenv("PHALANX_QEMU_NETWORK", "user")
    with_images(monkeypatch, vm_images, templates=tmp_path / "templates")
    broken = tmp_path / "templates" / "tmpl-broken"
    broken.mkdir(parents=True)
    (broken / "state").write_bytes(b"not a saved VM\n" * 100)
    await make_overlay(vm_images[1].disk, broken / "disk.qcow2")
    (broken / "template.json").write_text("{}\n")
    monkeypatch.setattr(
        vmtemplate, "find", lambda shape, root: vmtemplate.Template(
            broken, broken / "state", broken / "disk.qcow2"
        ) if broken.exists() else None,
    )  # fmt: skip
    host = Host(name="vm0.broken.test", ram_size="256M")
    suite = _suite((host,), Case(name="who", stages={"run": Script(text="hostname")}))
    options = RunOptions(results=tmp_path / "results", heartbeat_timeout=20, connect_timeout=BOOT)
    with caplog.at_level(logging.WARNING, logger="phalanx.providers.qemu"):
        result, folder = await run_local(suite, options)

    assert result.status is Status.PASSED, result.reason
    assert output(folder, result, "who", "run", host.name) == f"{host.short_name}\n"
    assert _record(folder, host.name)["boot"] == "cold"
    assert not broken.exists()
    assert "the template tmpl-broken did not restore, so it boots cold" in caplog.text


@needs_qemu
@pytest.mark.timeout(BOOT + 120)
async def test_a_template_that_cannot_be_built_leaves_the_vms_to_boot_cold(
    tmp_path: Path,
    vm_images: tuple[Image, RootDisk],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PHALANX_QEMU_NETWORK", "user")
    templates = tmp_path / "templates"
    with_images(monkeypatch, vm_images, templates=templates)

    async def cannot_save(*_: object) -> None:
        raise ProvisionError("no room for the state")

    monkeypatch.setattr(vmtemplate, "save", cannot_save)
    host = Host(name="vm0.nobuild.test", ram_size="256M")
    suite = _suite((host,), Case(name="who", stages={"run": Script(text="hostname")}))
    options = RunOptions(results=tmp_path / "results", heartbeat_timeout=20, connect_timeout=BOOT)
    with caplog.at_level(logging.WARNING, logger="phalanx.providers.qemu"):
        result, folder = await run_local(suite, options)

    assert result.status is Status.PASSED, result.reason
    assert output(folder, result, "who", "run", host.name) == f"{host.short_name}\n"
    assert _record(folder, host.name)["boot"] == "cold"
    assert "so its VMs boot cold: no room for the state" in caplog.text
    assert [p.name for p in templates.iterdir()] == []  # nothing half-built is left
