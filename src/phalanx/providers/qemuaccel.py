"""Which accelerator QEMU runs phalanx's VMs with: KVM when a short boot
under it works (nested KVM can crash or hang: both are caught), else TCG;
remembered until the machine reboots (`kvm-probe.json` in the image cache).
`PHALANX_QEMU_ACCEL=kvm|tcg` decides instead."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

from phalanx.host.process import signal_group
from phalanx.providers.machine import console_tail
from phalanx.providers.qemuargs import KERNEL_ARGS, QEMU, machine_args
from phalanx.providers.vmimage import PROBE_MARK, Image, cache_root

ACCEL_ENV = "PHALANX_QEMU_ACCEL"
PROBE_TIMEOUT = 20.0


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


async def _probe_kvm(image: Image, qemu: str) -> str | None:
    """None when a short boot under KVM reaches the guest's init; else why not."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is missing or not usable by this user"
    with tempfile.TemporaryDirectory(prefix="phalanx-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        process = await asyncio.create_subprocess_exec(
            *machine_args("kvm", 128, image, f"{KERNEL_ARGS} phalanx.probe"),
            "-serial",
            f"file:{console}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, err = await asyncio.wait_for(process.communicate(), PROBE_TIMEOUT)
        except TimeoutError:
            signal_group(process.pid, signal.SIGKILL)
            await process.wait()
            return f"a boot under KVM did not finish within {PROBE_TIMEOUT:g}s"
        if PROBE_MARK in console_tail(console, 100):
            return None
        lines = err.decode(errors="replace").strip().splitlines()
        detail = lines[-1] if lines else f"exit status {process.returncode}"
        return f"a boot under KVM failed: {detail}"


async def choose_accel(image: Image, qemu: str = QEMU) -> tuple[str, str]:
    """("kvm" or "tcg", why)."""
    forced = os.environ.get(ACCEL_ENV)
    if forced in ("kvm", "tcg"):
        return forced, f"{ACCEL_ENV}={forced}"
    record = cache_root().parent / "kvm-probe.json"
    key = {"boot_id": _boot_id(), "qemu": shutil.which(qemu) or qemu, "kernel": str(image.path)}
    with contextlib.suppress(OSError, ValueError, KeyError):
        known = json.loads(record.read_text())
        if all(known[k] == v for k, v in key.items()):
            return str(known["accel"]), str(known["reason"]) + " (probed earlier)"
    problem = await _probe_kvm(image, qemu)
    accel, reason = ("kvm", "KVM works") if problem is None else ("tcg", problem)
    with contextlib.suppress(OSError):
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({**key, "accel": accel, "reason": reason}))
    return accel, reason
