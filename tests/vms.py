"""What the VM tests need from this machine, and why they skip without it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from phalanx.providers.qemu import QemuProvider
from phalanx.providers.vmimage import Image, ImageError, RootDisk, find_busybox, find_kernel

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


def with_images(
    monkeypatch: pytest.MonkeyPatch, images: tuple[Image, RootDisk], templates: Path | None = None
) -> list[QemuProvider]:
    """Every QemuProvider opened from now on uses the session's `images`
    (built once, not per test) and, given, keeps its templates in
    `templates`; the list fills with them as they open."""
    providers: list[QemuProvider] = []
    opened = QemuProvider.open

    async def open_with_images(self: QemuProvider) -> None:
        self.image, self.root_disk = images
        if templates is not None:
            self.templates_root = templates
        providers.append(self)
        await opened(self)

    monkeypatch.setattr(QemuProvider, "open", open_with_images)
    return providers
