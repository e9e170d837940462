"""QEMU's command lines for phalanx's VMs: the machine and its hardware,
the tiny image's kernel, the root disk, the 9p shares, the ports (`go`,
`net`), and a template's (vmtemplate); a VM's RAM and MAC from its host's
definition."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from phalanx.model import Host
from phalanx.providers import guestnet
from phalanx.providers.base import ProvisionError
from phalanx.providers.vmimage import ROOT_SERIAL, Image

QEMU = "qemu-system-x86_64"
DEFAULT_RAM_MB = 512
KERNEL_ARGS = "console=ttyS0 panic=-1 loglevel=4 tsc=reliable no_timer_check"
DISK_ROOT_ARG = "phalanx.root=disk"
ROOT_DEVICE = "phalanx-root"  # the root disk's drive id


def ram_megabytes(ram_size: str | None) -> int:
    """`ram_size` as MiB: XrdTest's bare number is KiB; `256M`, `2G`, `512K`."""
    if ram_size is None or not ram_size.strip():
        return DEFAULT_RAM_MB
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)i?B?", ram_size.strip(), re.I)
    if match is None:
        raise ProvisionError(f"ram_size {ram_size!r} is not a size (524288, 256M, 2G)")
    number, unit = int(match[1]), (match[2] or "K").upper()
    kib = number * {"K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}[unit]
    if kib < 64 * 1024:
        raise ProvisionError(f"ram_size {ram_size!r} is less than the 64M a VM needs")
    return kib // 1024


def mac_address(host: Host) -> str:
    """The host's MAC, or a locally administered one derived from its name
    (stable from run to run)."""
    if host.mac:
        return host.mac
    digest = hashlib.sha256(host.name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def disk_serial(name: str) -> str:
    return name[:20]  # virtio-blk serials are at most 20 bytes


def machine_args(
    accel: str,
    ram_mb: int,
    image: Image,
    append: str,
    machine_type: str = "q35",
    vcpus: int = 1,
) -> list[str]:
    return [
        *hardware_args(accel, ram_mb, machine_type, vcpus),
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        append,
    ]


def hardware_args(accel: str, ram_mb: int, machine_type: str = "q35", vcpus: int = 1) -> list[str]:
    cpu = "host" if accel == "kvm" else "max"
    return [
        QEMU,
        "-machine",
        f"{machine_type},accel={accel}",
        "-cpu",
        cpu,
        "-m",
        f"{ram_mb}M",
        "-smp",
        str(vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",  # a guest that panics or reboots ends its QEMU
    ]


def share_args(tag: str, path: Path, multidevs: bool = False) -> list[str]:
    """A read-only virtio-9p share of `path` under mount tag `tag`."""
    options = f"local,id={tag},path={path},security_model=none,readonly=on"
    if multidevs:
        options += ",multidevs=remap"  # `/` spans many file systems
    return ["-fsdev", options, "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]


def disk_args(overlay: Path) -> list[str]:
    """The root disk (its per-VM overlay) as the init finds it: by serial."""
    return [
        "-drive",
        f"file={overlay},if=none,id={ROOT_DEVICE},format=qcow2",
        "-device",
        f"virtio-blk-pci,drive={ROOT_DEVICE},serial={ROOT_SERIAL}",
    ]


def go_args(socket: Path) -> list[str]:
    """The `phalanx.go` port: the provider says go on it, the guest's stage2
    waits for it before starting its agent."""
    return [
        "-device", "virtio-serial-pci,id=phalanx-vser",
        "-chardev", f"socket,id=phalanx-go,path={socket},server=on,wait=off",
        "-device", "virtserialport,bus=phalanx-vser.0,chardev=phalanx-go,name=phalanx.go",
    ]  # fmt: skip


def fresh_sockets(args: list[str], generation: int) -> list[str]:
    """A migration's clone of `args`, its ports' sockets (`go`, `net`) at
    paths of its own: QEMU removes a listening socket's path when it ends,
    so a path shared with the source would be gone with the source (and a
    destination that failed would take the source's with it)."""
    return [
        re.sub(r"(path=[^,]*/(?:go|net))(?:-\d+)?\.sock", rf"\g<1>-{generation}.sock", a)
        for a in args
    ]


def chardev_path(args: list[str], chardev: str) -> Path | None:
    """Where the QEMU of `args` listens for chardev `chardev`'s socket."""
    for arg in args:
        if arg.startswith("socket,") and f",id={chardev}," in f",{arg[7:]},":
            match = re.search(r"(?:^|,)path=([^,]*)", arg)
            if match:
                return Path(match[1])
    return None


def template_vm_args(
    accel: str,
    ram_mb: int,
    vcpus: int,
    image: Image,
    overlay: Path,
    seed: Path,
    go: Path,
    net: Path,
    netdev: str,
    mac: str,
) -> list[str]:
    """A VM that is a template (vmtemplate) or is restored from one: the
    same machine and devices in the same order either way (a restoring QEMU
    must match the saved one), only the files and the network's backend
    its own. `vmgenid`: each restoring QEMU has a new one, and the guest's
    kernel reseeds its RNG when it changes."""
    args = machine_args(accel, ram_mb, image, f"{KERNEL_ARGS} {DISK_ROOT_ARG}", vcpus=vcpus)
    args += disk_args(overlay) + share_args("seed", seed) + go_args(go) + guestnet.port_args(net)
    args += ["-device", "vmgenid,guid=auto"]
    args += ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=net0,mac={mac}"]
    return args
