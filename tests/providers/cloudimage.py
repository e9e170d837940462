"""A real cloud-init image for the `boot_image:` test, built here from the
Debian mirror (a package registry: nothing else is downloaded) and cached
under ~/.cache/phalanx-tests, once per machine.

How, and why this way: `debootstrap --variant=minbase` makes the root with
the cloud kernel, cloud-init, systemd and python3-venv; the disk is put
together without a loop device or a mount (neither need exist where tests
run): an MBR (syslinux's boot code and a partition table written here), a
FAT partition holding the kernel, its initramfs and SYSLINUX (installed by
`syslinux --install`, which works on an unmounted image through mtools), and
an ext4 root made from the directory by `mkfs.ext4 -d`. So the VM boots by
its own bootloader, as a user's image would. Needs root (debootstrap
chroots) and apt's debootstrap, syslinux, syslinux-common, mtools,
dosfstools, e2fsprogs, qemu-utils.

`python tests/providers/cloudimage.py` builds it (and says how long it took).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = "3"  # bump when the recipe changes: a new file name, a new build
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "linux-image-cloud-amd64",
    "cloud-init",
    "python3-venv",
    "systemd-sysv",
    "dbus",  # for logind, which turns the ACPI power button into a shutdown
    "udev",
    "ifupdown",
    "iproute2",
)
MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
TOOLS = ("debootstrap", "mkfs.ext4", "mkfs.vfat", "syslinux", "mcopy", "qemu-img")
BOOT_MB = 64
FREE_MB = 768  # room in the root for the agent's venv and a run
SECTOR = 512
KERNEL_ARGS = "root=LABEL=root rw console=ttyS0 panic=-1 net.ifnames=0 quiet"
BUILD_TIMEOUT = 1800.0

# cloud-init looks for a NoCloud seed only (no network metadata service to
# wait for), and the image has nothing that runs at boot besides.
CLOUD_CFG = """datasource_list: [NoCloud, None]
"""


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "phalanx-tests" / f"debian-{SUITE}-cloud-{RECIPE}.qcow2"


def why_not() -> str | None:
    """None when an image can be built here; else why not."""
    if os.geteuid() != 0:
        return "building the cloud image needs root (debootstrap chroots)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not MBR.is_file():
        missing.append(str(MBR))
    if missing:
        return (
            "building the cloud image needs "
            + ", ".join(missing)
            + " (apt-get install debootstrap syslinux syslinux-common mtools dosfstools "
            "e2fsprogs qemu-utils)"
        )
    return None


def image() -> Path:
    """The cached image, built now if it is not there yet."""
    final = cache_path()
    if final.is_file():
        return final
    problem = why_not()
    if problem is not None:
        raise RuntimeError(problem)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="phalanx-cloudimage-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        root = work / "root"
        _debootstrap(root)
        _configure(root)
        disk = work / "disk.raw"
        _disk(root, work, disk)
        partial = final.with_suffix(".partial")
        _run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(disk), str(partial)])
        partial.rename(final)
    for old in final.parent.glob(f"debian-{SUITE}-cloud-*.qcow2"):
        if old != final:  # an earlier recipe's
            old.unlink()
    return final


def _run(command: list[str], **kwargs: object) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{command[0]} failed ({done.returncode}):\n{tail}")


def _debootstrap(root: Path) -> None:
    """minbase, then the packages by apt in the chroot (debootstrap's own
    --include resolves dependencies less well: cloud-init's fail to configure)."""
    try:
        _run(["debootstrap", "--variant=minbase", SUITE, str(root), MIRROR])
    except RuntimeError as exc:
        log = root / "debootstrap" / "debootstrap.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        raise RuntimeError("\n".join([str(exc), *tail])) from None
    # No service starts in the chroot; apt's postinsts may need /proc.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    _run(["mount", "-t", "proc", "proc", str(root / "proc")])
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
        _run(["chroot", str(root), *install], env=env)
        _run(["chroot", str(root), "apt-get", "clean"], env=env)
    finally:
        _run(["umount", str(root / "proc")])
    policy.unlink()


def _configure(root: Path) -> None:
    (root / "etc/fstab").write_text("LABEL=root / ext4 defaults 0 1\n")
    (root / "etc/hostname").write_text("debian\n")
    (root / "etc/cloud/cloud.cfg.d/90-phalanx.cfg").write_text(CLOUD_CFG)
    # Nothing but the seed configures the network (cloud-init writes it).
    (root / "etc/network/interfaces").write_text("source /etc/network/interfaces.d/*\n")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer"):
        link = root / "etc/systemd/system/timers.target.wants" / timer
        link.unlink(missing_ok=True)


def _disk(root: Path, work: Path, disk: Path) -> None:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise RuntimeError("debootstrap left no kernel or initramfs in /boot")
    boot = work / "boot.img"
    _run(["mkfs.vfat", "-C", "-n", "BOOT", str(boot), str(BOOT_MB * 1024)])
    config = work / "syslinux.cfg"
    # SERIAL: the bootloader's own banner on the serial console too.
    config.write_text(f"SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n"
                      f"  KERNEL /vmlinuz\n  APPEND initrd=/initrd.img {KERNEL_ARGS}\n")  # fmt: skip
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    for source, name in ((kernels[-1], "vmlinuz"), (initrds[-1], "initrd.img"), (config, "")):
        _run(["mcopy", "-i", str(boot), str(source), f"::/{name or source.name}"], env=env)
    _run(["syslinux", "--install", str(boot)])
    used = int(subprocess.run(["du", "-sm", str(root)], capture_output=True, text=True,
                              check=True).stdout.split()[0])  # fmt: skip
    rootfs = work / "root.img"
    size_mb = used + FREE_MB
    _run(["mkfs.ext4", "-q", "-L", "root", "-d", str(root), str(rootfs), f"{size_mb}M"])
    start1 = 2048
    sectors1 = BOOT_MB * 1024 * 1024 // SECTOR
    start2 = start1 + sectors1
    sectors2 = size_mb * 1024 * 1024 // SECTOR
    mbr = bytearray(MBR.read_bytes()[:440].ljust(440, b"\0"))
    mbr += b"\0" * 6
    # Bootable FAT16 (LBA) then Linux; CHS fields saturated: LBA is what counts.
    for bootable, kind, start, count in (
        (0x80, 0x0E, start1, sectors1),
        (0, 0x83, start2, sectors2),
    ):
        mbr += struct.pack(
            "<B3sB3sII", bootable, b"\xfe\xff\xff", kind, b"\xfe\xff\xff", start, count
        )
    mbr += b"\0" * 32 + b"\x55\xaa"
    with disk.open("wb") as out:
        out.write(mbr)
        for start, part in ((start1, boot), (start2, rootfs)):
            out.seek(start * SECTOR)
            with part.open("rb") as data:
                shutil.copyfileobj(data, out, 4 * 1024 * 1024)
        out.truncate((start2 + sectors2) * SECTOR)


if __name__ == "__main__":
    began = time.monotonic()
    path = image()
    print(f"{path} ({time.monotonic() - began:.0f}s)")
    sys.exit(0)
