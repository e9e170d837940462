"""The tiny VM image's parts, on made-up kernels and modules: no QEMU, no
installed kernel needed."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest

from phalanx.providers.vmimage import (
    ImageError,
    Kernel,
    _cpio,
    _is_static_elf,
    _place,
    find_kernel,
    module_files,
)


def _kernel(tmp_path: Path, version: str, config: str) -> None:
    boot, modules = tmp_path / "boot", tmp_path / "lib" / version
    boot.mkdir(exist_ok=True)
    modules.mkdir(parents=True)
    (boot / f"vmlinuz-{version}").write_bytes(b"kernel")
    (boot / f"config-{version}").write_text(config)
    (modules / "modules.dep").write_text("")


def test_the_newest_kernel_with_9p_is_chosen(tmp_path: Path) -> None:
    _kernel(tmp_path, "6.1.0-9-amd64", "CONFIG_9P_FS=m\n")
    _kernel(tmp_path, "6.1.0-10-amd64", "CONFIG_9P_FS=y\n")
    _kernel(tmp_path, "6.1.0-11-cloud-amd64", "# CONFIG_9P_FS is not set\n")
    kernel = find_kernel(tmp_path / "boot", tmp_path / "lib")
    assert kernel.version == "6.1.0-10-amd64"


def test_no_kernel_with_9p_says_what_to_install(tmp_path: Path) -> None:
    _kernel(tmp_path, "6.1.0-11-cloud-amd64", "# CONFIG_9P_FS is not set\n")
    with pytest.raises(ImageError, match="linux-image-amd64"):
        find_kernel(tmp_path / "boot", tmp_path / "lib")


def test_modules_come_after_what_they_need_and_built_in_ones_are_left_out(
    tmp_path: Path,
) -> None:
    root = tmp_path / "6.1"
    root.mkdir()
    (root / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko.xz: kernel/fs/netfs/netfs.ko kernel/net/9p/9pnet.ko\n"
        "kernel/net/9p/9pnet.ko:\n"
        "kernel/fs/netfs/netfs.ko:\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko\n"
    )
    (root / "modules.builtin").write_text("kernel/drivers/virtio/virtio.ko\n")
    kernel = Kernel("6.1", root / "vmlinuz", root)
    files = module_files(kernel, ("9pnet_virtio", "9p", "virtio"))
    assert [f.name for f in files] == ["9pnet.ko", "9pnet_virtio.ko", "netfs.ko", "9p.ko.xz"]
    with pytest.raises(ImageError, match="no module ext4"):
        module_files(kernel, ("ext4",))


def _elf(with_interpreter: bool) -> bytes:
    """A minimal 64-bit little-endian ELF header and one program header."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)  # e_phentsize, e_phnum
    program = bytearray(56)
    struct.pack_into("<I", program, 0, 3 if with_interpreter else 1)  # PT_INTERP / PT_LOAD
    return bytes(header + program)


def test_only_a_static_busybox_runs_in_an_initramfs() -> None:
    assert _is_static_elf(_elf(with_interpreter=False))
    assert not _is_static_elf(_elf(with_interpreter=True))
    assert not _is_static_elf(b"#!/bin/sh\n")


def _read_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name: (mode, data), as the kernel unpacks a newc archive."""
    entries: dict[str, tuple[int, bytes]] = {}
    at = 0
    while True:
        assert data[at : at + 6] == b"070701"
        fields = [int(data[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[at + 110 : at + 110 + namesize - 1].decode()
        at += 110 + namesize
        at += -at % 4
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[at : at + size])
        at += size + (-size % 4)


def test_the_initramfs_archive_is_newc_and_the_same_files_give_the_same_bytes() -> None:
    files = [("bin", 0o040755, b"", (0, 0)), ("init", 0o100755, b"#!/bin/sh\necho hi\n", (0, 0))]
    archive = _cpio(files)
    assert archive == _cpio(files)
    assert _read_cpio(archive) == {
        "bin": (0o040755, b""),
        "init": (0o100755, b"#!/bin/sh\necho hi\n"),
    }
    # What the kernel is given is gzip of it, which its RD_GZIP unpacks.
    assert gzip.decompress(gzip.compress(archive, mtime=0)) == archive


def _inside(staging: Path, path: str) -> Path:
    """`path` resolved inside `staging`, its links read as the guest would."""
    current = staging
    for part in Path(path).parts[1:]:
        candidate = current / part
        hops = 0
        while candidate.is_symlink():
            link = os.readlink(candidate)
            base = staging if link.startswith("/") else candidate.parent
            candidate = Path(os.path.normpath(base / link.lstrip("/")))
            hops += 1
            assert hops < 10 and str(candidate).startswith(str(staging)), candidate
        current = candidate
    return current


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="no /bin/sh")
def test_a_file_is_placed_at_its_path_with_the_links_on_the_way_kept(tmp_path: Path) -> None:
    """/bin/sh (on Debian: /bin -> usr/bin, sh -> dash) lands in the
    staging folder the way it is here: the links are links, the file a file
    with the same bytes, and nothing outside the staging folder is touched."""
    staging = tmp_path / "staging"
    staging.mkdir()
    _place("/bin/sh", staging)
    _place("/bin/sh", staging)  # a second time changes nothing
    placed = _inside(staging, "/bin/sh")
    assert placed.is_file() and not placed.is_symlink()
    assert placed.read_bytes() == Path("/bin/sh").resolve().read_bytes()
    assert (staging / "bin").is_symlink() == Path("/bin").is_symlink()
