"""What the VM tests share: the tiny image and the root disk, built (or
found) once per session in this user's cache, which is content-hashed, so
reusing what an earlier session built is safe."""

from __future__ import annotations

import shutil

import pytest

from phalanx.providers.vmimage import (
    Image,
    ImageError,
    RootDisk,
    build_image,
    build_root_disk,
    find_busybox,
    find_kernel,
)


def vm_missing() -> str | None:
    """Why VMs with root disks cannot run here, or None."""
    for tool in ("qemu-system-x86_64", "qemu-img", "mkfs.ext4", "/usr/sbin/sshd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (qemu-system-x86 qemu-utils e2fsprogs openssh-server)"
    try:
        find_kernel()
        find_busybox()
    except ImageError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def vm_images() -> tuple[Image, RootDisk]:
    return build_image(), build_root_disk()
