"""VMs restored from a saved template instead of booted: under TCG a cold
boot of a root-disk VM spends seconds in the kernel and init and more in
Python importing the agent (pydantic, websockets, asyncio), every time.

A template is one such VM booted once per shape (the tiny image, the root
disk, RAM, vCPUs, accel, QEMU and the device set: `Shape`), its guest
stopped where the agent's modules are imported and it waits on its go port
(`vmimage.TEMPLATE_AGENT`), then saved: its state (QEMU's migration stream,
`state`) and its root disk's overlay as it was then (`disk`). A VM booted
from it starts QEMU with `-incoming` from that state, on an overlay of its
own over the template's (which is then only read), with the same devices;
once it runs, the provider sends it who it is over its go port
(`identity`): its vm.env, token, MAC, hosts file, this machine's clock and
fresh entropy. The guest's kernel reseeds its RNG by itself too: every
QEMU that restores has a new `vmgenid`.

Templates live beside the images and root disks (`vmimage.cache_root()`),
each in a folder named by the hash of its shape, published whole or not at
all, and pruned like them (`cache.taken`). A template that cannot be built
or restored is the caller's cue to boot cold (it logs why).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from phalanx.providers import cache
from phalanx.providers.base import ProvisionError
from phalanx.providers.machine import Machine, console_tail

FORMAT = 1  # bump when what a template holds changes: old ones are not reused
ENV = "PHALANX_QEMU_TEMPLATE"  # "0": every VM boots cold
READY_MARK = "phalanx-vm: template ready"
MAC = "52:54:00:00:00:01"  # the template's own; each VM's guest takes its host's
# The template's network: a hub port to nowhere. Its VMs' own backends
# (user-mode, a tap) are their own; a user-mode one saved with the template
# would be in its state ("slirp"), which a VM on a tap cannot load.
NETDEV = "hubport,id=net0,hubid=0"
SAVE_BANDWIDTH = 8 << 30  # bytes/s: QEMU's default (32 MiB/s) would take seconds
BUILD_TIMEOUT = {"kvm": 120.0, "tcg": 300.0}  # a cold boot to the agent's imports, and the save
RESTORE_TIMEOUT = 60.0
POLL = 0.02


class Unrestorable(ProvisionError):
    """QEMU refused the template's saved state: the template is no good
    (a restore that only took too long, on a loaded machine, says nothing
    about the template)."""


@dataclass(frozen=True)
class Shape:
    """What a template is the template of. A restoring QEMU must have the
    same machine, memory and devices (`args`: the template's command line
    with its own paths left out) as the one saved."""

    args: tuple[str, ...]
    root_disk: str  # the root disk's image, itself named by the hash of its content
    qemu: str  # the QEMU binary: path, size, time

    def key(self) -> str:
        text = json.dumps([FORMAT, self.args, self.root_disk, self.qemu])
        return "tmpl-" + hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Template:
    path: Path  # its folder in the cache
    state: Path  # the saved VM: QEMU's migration stream
    disk: Path  # the root disk's overlay as saved: every restored VM's backing file


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def qemu_identity(binary: str) -> str:
    found = shutil.which(binary) or binary
    try:
        stat = Path(found).stat()
    except OSError:
        return found
    return f"{found}:{stat.st_size}:{stat.st_mtime_ns}"


def _template(path: Path) -> Template:
    return Template(path, path / "state", path / "disk.qcow2")


def find(shape: Shape, root: Path) -> Template | None:
    """The cached template of `shape`, marked used; None if there is none."""
    path = root / shape.key()
    if not (path / "template.json").is_file():
        return None
    cache.taken(path)
    return _template(path)


def discard(template: Template) -> None:
    """A template that did not restore: gone, so the next run builds it anew."""
    shutil.rmtree(template.path, ignore_errors=True)


Boot = Callable[[Path, Path], Awaitable[Machine]]


async def build(shape: Shape, root: Path, boot: Boot, accel: str) -> Template:
    """The template of `shape`: `boot(disk, folder)` starts the template VM
    (its root disk's overlay to be made at `disk`, its console and logs in
    `folder`), which is saved once its guest says it is ready. A
    ProvisionError says why it could not be."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-tmpl-", dir=root))
    began = time.monotonic()
    try:
        machine = await boot(staging / "disk.qcow2", staging / "boot")
        try:
            await _wait_ready(machine, BUILD_TIMEOUT.get(accel, 300.0))
            await save(machine, staging / "state", BUILD_TIMEOUT.get(accel, 300.0))
        finally:
            await machine.kill()
            await machine.close()
        meta = {
            "format": FORMAT,
            "shape": shape.key(),
            "seconds": round(time.monotonic() - began, 3),
        }
        (staging / "template.json").write_text(json.dumps(meta, indent=2) + "\n")
        path = root / shape.key()
        try:
            staging.rename(path)
        except OSError:
            if not (path / "template.json").is_file():  # not another build that won the race
                raise
    except OSError as exc:
        raise ProvisionError(f"cannot keep the template: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    cache.taken(path)
    return _template(path)


async def _wait_ready(machine: Machine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError):
            if READY_MARK.encode() in machine.console.read_bytes():
                return
        if machine.returncode is not None:
            raise ProvisionError(
                f"the template VM ended before it was ready (QEMU exit status "
                f"{machine.returncode}); its console's last lines:\n{console_tail(machine.console)}"
            )
        if time.monotonic() > deadline:
            raise ProvisionError(
                f"the template VM was not ready within {timeout:g}s; its console's last "
                f"lines:\n{console_tail(machine.console)}"
            )
        await asyncio.sleep(0.1)


async def save(machine: Machine, state: Path, timeout: float) -> None:
    """The VM stopped and its state written to `state` (whole, or not at
    all: written aside and renamed when complete)."""
    part = state.with_name(state.name + ".part")
    await machine.qmp("stop")
    await machine.qmp("migrate-set-parameters", **{"max-bandwidth": SAVE_BANDWIDTH})
    target = (
        f"cat > {shlex.quote(str(part))} && mv {shlex.quote(str(part))} {shlex.quote(str(state))}"
    )
    await machine.qmp("migrate", uri=f"exec:{target}")
    deadline = time.monotonic() + timeout
    while True:
        info = await machine.qmp("query-migrate")
        status = info.get("status")
        if status == "completed" and state.exists():
            return
        if status in ("failed", "cancelled"):
            raise ProvisionError(f"cannot save the template VM: {info.get('error-desc') or status}")
        if time.monotonic() > deadline:
            raise ProvisionError(f"the template VM was not saved within {timeout:g}s ({status})")
        await asyncio.sleep(POLL * 5)


def incoming(template: Template) -> list[str]:
    """What restores a VM from `template` (Machine.start's extra options)."""
    return ["-incoming", f"exec:cat {shlex.quote(str(template.state))}"]


def refused(machine: Machine) -> bool:
    """Whether a QEMU started from `incoming` could not load the state (it
    says so in its log), however the caller learnt that it failed: at its
    start, while loading, or by a monitor that went away."""
    with contextlib.suppress(OSError):
        return "load of migration failed" in machine.log_file.read_text(errors="replace")
    return False


async def restored(machine: Machine, timeout: float = RESTORE_TIMEOUT) -> None:
    """Until the VM started from `incoming` has loaded the state; then it
    runs (the template was saved stopped). Unrestorable if QEMU could not
    load it (QEMU's reason from its log), ProvisionError if not in time."""
    deadline = time.monotonic() + timeout
    while True:
        if machine.returncode is not None:
            said = console_tail(machine.log_file, 3, empty="")
            raise Unrestorable(
                f"QEMU could not restore the template (exit status {machine.returncode}"
                + (f"; QEMU: {said}" if said else "")
                + ")"
            )
        try:
            status = await machine.status()
        except Exception:  # its monitor went away: QEMU ends (said above)
            with contextlib.suppress(TimeoutError):
                await machine.wait(5)
            if machine.returncode is not None:
                continue
            raise
        if status == "paused":
            await machine.qmp("cont")
            return
        if status == "running":
            return
        if status != "inmigrate":
            raise Unrestorable(f"QEMU could not restore the template (status {status})")
        if time.monotonic() > deadline:
            raise ProvisionError(f"QEMU did not restore the template within {timeout:g}s")
        await asyncio.sleep(POLL)


def identity(
    env: Mapping[str, str],
    token: str,
    mac: str,
    hosts: str = "",
    link: Mapping[str, str] | None = None,
) -> bytes:
    """What a restored guest is told, one JSON line (TEMPLATE_AGENT reads
    it). `link`: its link conditions' `tc -batch` files (guestnet.seed_files),
    which a cold boot's guest finds in its seed."""
    told = {
        "env": dict(env),
        "token": token,
        "mac": mac,
        "hosts": hosts,
        "link": dict(link or {}),
        "time": time.time(),
        "entropy": os.urandom(64).hex(),
    }
    return json.dumps(told).encode() + b"\n"
