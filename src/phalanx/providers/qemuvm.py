"""A phalanx VM beside the provider: its record (`vm.json`), its
network on a bridge, its `phalanx.net` port, how it ends at its cluster's
end, where its private files go, and a VM without an agent (phalanx.virt)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from phalanx.model import Host
from phalanx.providers import guestnet, netns
from phalanx.providers.machine import Machine, Monitor
from phalanx.providers.qemuargs import (
    DISK_ROOT_ARG,
    KERNEL_ARGS,
    chardev_path,
    disk_args,
    mac_address,
    machine_args,
    ram_megabytes,
    share_args,
)
from phalanx.providers.qemuguest import guest_env, write_seed
from phalanx.providers.qemuimg import make_overlay
from phalanx.providers.vmimage import Image, RootDisk

EXIT_GRACE = 10.0  # a VM whose agent was told to shut down powers off by itself
POWERDOWN_GRACE = 10.0  # after ACPI power-off, before `quit`


@dataclass
class VM:
    host: Host
    machine: Machine
    network: dict[str, str]  # how it was connected, for vm.json
    root: str  # host | disk
    boot: str = "cold"  # cold | template (restored from one: vmtemplate)
    booted_after: float | None = None  # seconds from QEMU's start to the agent's (or to `go`)
    connected_after: float | None = None  # ...to the agent's connection
    go: asyncio.StreamWriter | None = None  # the "go" port's connection (revert: case)

    @property
    def process(self) -> asyncio.subprocess.Process:
        assert self.machine.process is not None, "a VM is registered once QEMU runs"
        return self.machine.process

    @property
    def folder(self) -> Path:
        return self.machine.folder

    @property
    def private(self) -> Path:
        return self.machine.private

    @property
    def monitor(self) -> Monitor | None:
        return self.machine.monitor

    @property
    def console(self) -> Path:
        return self.machine.console

    def record(self) -> dict[str, object]:
        """What `vm.json` keeps with the run: how the VM was made, how long
        it took to boot, its migrations and snapshots, how it ended."""
        host = self.host
        return {
            "accel": self.machine.accel,
            "boot_image": host.boot_image,  # None: the tiny image
            "ram_mb": ram_megabytes(host.ram_size),
            "vcpus": host.vcpus or 1,
            "mac": mac_address(host),
            "root": self.root,
            "boot": self.boot,
            "network": self.network,
            "disks": [
                {"name": d.name, "size": d.size, "mount_point": d.mount_point} for d in host.disks
            ],
            "boot_to_agent_s": _rounded(self.booted_after),
            "boot_to_connected_s": _rounded(self.connected_after),
            "migrations": self.machine.migrations,
            "snapshots": self.machine.snapshots,
            "ended_by": self.machine.ended_by,
            "exit_status": self.machine.returncode,
        }


def _rounded(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None


@dataclass(frozen=True)
class Bridged:
    """The VMs' network when they have taps on the cluster's bridge."""

    plan: netns.Plan
    record: netns.Record
    taps: dict[str, str]  # host name: its tap
    hosts_file: str  # every VM's /etc/hosts
    # host name: a second tap on the bridge, for the QEMU a VM migrates to
    # (a tap serves one QEMU at a time); the two swap at each migration.
    spares: dict[str, str] = field(default_factory=dict)


def net_channel(host: str, machine: Machine) -> guestnet.GuestChannel:
    """The phalanx.net port of `host`'s VM (`phalanx-net slow` and heal, in
    the guest), at the socket its QEMU listens on now."""
    socket = chardev_path(machine.args, guestnet.CHARDEV) or machine.private / "net.sock"
    return guestnet.GuestChannel(host, socket)


async def standalone_vm(
    name: str,
    folder: Path,
    private: Path,
    *,
    accel: str,
    image: Image,
    root_disk: RootDisk,
    ram_mb: int = 256,
    netdev: str = "user,id=net0",
    mac: str = "",
    files: Mapping[str, str | bytes] = {},
    extra: tuple[str, ...] = (),
    machine_type: str = "q35",
) -> Machine:
    """A disk-root VM without an agent (phalanx.virt drives it): its seed
    (`files`: `authorized_keys` and `ssh_host_ed25519_key` start sshd),
    its overlay and command line; not started yet. `machine_type`: `pc`
    for tests whose devices name the i440fx buses (`bus=pci.0`)."""
    private.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_seed(private / "seed", guest_env(name, None, python=root_disk.python), files=files)
    overlay = private / "root.qcow2"
    await make_overlay(root_disk.disk, overlay)
    mac = mac or mac_address(Host(name=name))
    args = machine_args(accel, ram_mb, image, f"{KERNEL_ARGS} {DISK_ROOT_ARG}", machine_type)
    args += share_args("seed", private / "seed") + disk_args(overlay)
    args += ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=net0,mac={mac}", *extra]
    return Machine(name, args, folder, private, accel=accel)


async def end_machine(machine: Machine, lost: bool) -> None:
    """A VM at its cluster's end: a lost one (its agent gone: QEMU killed,
    guest frozen) at once, the others once their agents have shut down and
    powered off, by ACPI and then `quit` if not. One already powered off
    (`power_off`) is left as it was."""
    if machine.ended_by is not None:
        return
    if lost:
        await machine.kill()
        machine.ended_by = "lost"
        return
    try:
        await machine.wait(EXIT_GRACE)
        machine.ended_by = "itself"  # its agent ended (or its kernel did)
    except TimeoutError:
        await machine.power_off(POWERDOWN_GRACE)


PRIVATE_PARENT = Path("/run/phalanx/qemu")


def private_parent() -> str | None:
    """Where the VMs' seeds and disks go: under /run when this process may
    write there (every guest mounts a fresh /run, so no VM sees another's
    seed through its 9p root), else the temp dir (the guest masks them)."""
    try:
        PRIVATE_PARENT.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return str(PRIVATE_PARENT) if os.access(PRIVATE_PARENT, os.W_OK) else None
