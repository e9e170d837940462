"""What the VM tests need from this machine, and why they skip without it."""

from __future__ import annotations

import shutil

import pytest

from phalanx.providers.vmimage import ImageError, find_busybox, find_kernel

BOOT = 240  # seconds a VM test may take: boots under TCG on a busy machine


def qemu_missing() -> str | None:
    """Why VMs booting the tiny image cannot run here, or None."""
    for tool in ("qemu-system-x86_64", "qemu-img"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install qemu-system-x86 qemu-utils)"
    try:
        find_kernel()
        find_busybox()
    except ImageError as exc:
        return str(exc)
    return None


def vm_missing() -> str | None:
    """Why VMs with root disks (sshd, mkfs.ext4) cannot run here, or None."""
    for tool in ("mkfs.ext4", "/usr/sbin/sshd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install e2fsprogs openssh-server)"
    return qemu_missing()


QEMU_MISSING = qemu_missing()
needs_qemu = pytest.mark.skipif(QEMU_MISSING is not None, reason=QEMU_MISSING or "")
