"""`qemu-img`, as the VMs need it: an empty qcow2 for a host's disk, and a
qcow2 overlay on a base image (a root disk, a host's own boot image) that
the VM writes while the base is only ever read."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from phalanx.host.process import signal_group
from phalanx.providers.base import ProvisionError

QEMU_IMG = "qemu-img"
TIMEOUT = 120.0  # seconds for one qemu-img call (a large base on a slow disk)


async def create(path: Path, size: int) -> None:
    """An empty qcow2 of `size` bytes."""
    await _run(
        f"qemu-img cannot make {path.name}", QEMU_IMG, "create", "-q", "-f", "qcow2",
        str(path), str(size),
    )  # fmt: skip


async def make_overlay(base: Path, overlay: Path) -> None:
    """A qcow2 overlay on `base`, whatever the base's format (read from it)."""
    info = await _run("qemu-img info", QEMU_IMG, "info", "--output=json", str(base))
    try:
        backing_format = str(json.loads(info)["format"])
    except (ValueError, KeyError) as exc:
        raise ProvisionError(f"qemu-img cannot read the image {base}") from exc
    await _run(
        "qemu-img create", QEMU_IMG, "create", "-q", "-f", "qcow2", "-F", backing_format,
        "-b", str(base), str(overlay),
    )  # fmt: skip


async def _run(what: str, *command: str) -> str:
    """The command's output; a ProvisionError saying `what` and its error."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        signal_group(process.pid, signal.SIGKILL)
        await process.wait()
        raise ProvisionError(f"{what}: qemu-img did not finish within {TIMEOUT:g}s") from None
    if process.returncode != 0:
        raise ProvisionError(f"{what}: {err.decode(errors='replace').strip()}")
    return out.decode()
