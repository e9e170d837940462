"""`self.vm` of a VM test: one QEMU guest on the phalanx root disk, driven
synchronously (each call runs on the test process's private event loop) and
built on the providers' Machine (QEMU + QMP, live migration).

The guest has user-mode networking with a forward of a free 127.0.0.1 port
to its port 22; sshd in it takes a key phalanx generated and shows a host
key phalanx generated (nothing else is accepted). A migrated guest's new
QEMU gets a forward of its own; `login_remote()` after a migration logs in
through it. The VM is an i440fx `pc` machine (avocado-virt's tests name its
`pci.0` bus) with a VGA card for `screendump`.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phalanx.providers.base import ProvisionError
from phalanx.virt.devices import Devices
from phalanx.virt.exceptions import TestError
from phalanx.virt.loop import Loop
from phalanx.virt.remote import Keys, Remote, connect

if TYPE_CHECKING:  # imported when a VM is powered on: the test child starts light
    from phalanx.providers.machine import Machine
    from phalanx.providers.vmimage import Image, RootDisk

# A graphic console for screendump (no window), on a slot of its own far
# from the ones tests name (usb_boot puts its controller on 05).
DISPLAY = ("-device", "VGA,vgamem_mb=4,bus=pci.0,addr=0x1f")
START_TIMEOUT = 60.0
MIGRATE_TIMEOUT = 180.0
POWER_OFF_TIMEOUT = 30.0  # for ACPI; then quit, then SIGKILL
CONSOLE_LINES = 15  # of a guest that did not come up, in the test's reason
LOGIN_TIMEOUT = {"kvm": 60.0, "tcg": 300.0}  # a first login waits for the boot


@dataclass(frozen=True)
class Guest:
    """What every VM of a test process boots: the image and root disk,
    the accelerator, RAM, and where VMs keep their scratch files."""

    image: Image
    root_disk: RootDisk
    accel: str
    ram_mb: int
    private: Path  # 0700; each VM's sockets, seed and overlay below it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def host_name(test: str) -> str:
    """A guest host name from a test's name (`vm-boottest-test-boot`)."""
    return ("vm-" + re.sub(r"[^a-z0-9]+", "-", test.lower()).strip("-"))[:63].rstrip("-")


def _forwarding(args: list[str], port: int) -> list[str]:
    """`args` with the SSH forward moved to `port` (a destination's own)."""
    return [re.sub(r"hostfwd=tcp:127\.0\.0\.1:\d+-:22", _hostfwd(port), a) for a in args]


def _hostfwd(port: int) -> str:
    return f"hostfwd=tcp:127.0.0.1:{port}-:22"


class VM:
    def __init__(
        self, name: str, folder: Path, loop: Loop, guest: Guest, login_timeout: float | None
    ) -> None:
        self.name = name
        self.folder = folder
        self.devices = Devices()
        self.remote: Remote | None = None
        self.port: int | None = None
        self.machine: Machine | None = None  # once powered on
        self.boot_to_login: float | None = None
        self.left_running = False
        self._loop = loop
        self._guest = guest
        self._keys: Keys | None = None
        self._args: list[str] = []
        self._login_timeout = login_timeout or LOGIN_TIMEOUT.get(guest.accel, 300.0)
        self._powered_on = 0.0

    def __bool__(self) -> bool:
        return True  # `if self.vm:` in tearDown means "there is a VM object"

    def _call(self, coro: Any, timeout: float, what: str) -> Any:
        try:
            return self._loop.run(coro, timeout, what)
        except ProvisionError as exc:
            raise TestError(str(exc)) from exc

    def _machine(self) -> Machine:
        if self.machine is None or self.machine.returncode is not None:
            raise TestError(f"the VM {self.name} is not powered on")
        return self.machine

    # --- life -------------------------------------------------------------------

    def power_on(self) -> None:
        """Start QEMU (the guest boots meanwhile; `login_remote` waits for it)."""
        if self.machine is not None and self.machine.returncode is None:
            raise TestError(f"the VM {self.name} is powered on already")
        self._call(self._power_on(), START_TIMEOUT, f"powering on {self.name}")

    async def _power_on(self) -> None:
        from phalanx.providers import qemuvm

        if self.machine is not None:  # powered on again: the old QEMU's monitor and scratch
            await self.machine.close()
        self._keys = self._keys or Keys.generate()
        self.port = free_port()
        self.boot_to_login = None
        guest = self._guest
        machine = await qemuvm.standalone_vm(
            self.name,
            self.folder,
            # Short: QMP's socket path below it must stay under 108 bytes.
            guest.private / uuid.uuid4().hex[:8],
            accel=guest.accel,
            image=guest.image,
            root_disk=guest.root_disk,
            ram_mb=guest.ram_mb,
            netdev=f"user,id=net0,{_hostfwd(self.port)}",
            files=self._keys.seed_files(),
            extra=(*DISPLAY, *self.devices.args),
            # i440fx: avocado-virt's device lines name its buses (`bus=pci.0`).
            machine_type="pc",
        )
        self._args = machine.args
        self.machine = machine
        self._powered_on = time.monotonic()
        await machine.start()

    def login_remote(self, timeout: float | None = None) -> Remote:
        """Log in to the guest over SSH (waiting for its boot, up to
        `timeout`); `self.remote` is the login."""
        self._machine()
        wait = timeout if timeout is not None else self._login_timeout
        assert self._keys is not None and self.port is not None
        if self.remote is not None:
            self._call(self.remote.aclose(), 10, "closing the old login")
        try:
            connection = self._call(
                connect(self.port, self._keys, wait, self._ended),
                wait + 10,
                f"logging in to {self.name}",
            )
        except TestError as exc:  # a guest that does not come up: what its console said
            raise TestError(f"{exc}; the console's last lines:\n{self._console_tail()}") from exc
        if self.boot_to_login is None:
            self.boot_to_login = time.monotonic() - self._powered_on
        self.remote = Remote(self._loop, connection, self.port)
        return self.remote

    def _ended(self) -> str | None:
        code = self.machine.returncode if self.machine is not None else None
        return None if code is None else f"the VM {self.name} ended (QEMU exit status {code})"

    def _console_tail(self) -> str:
        from phalanx.providers.machine import console_tail

        return console_tail(self.folder / "console.log", CONSOLE_LINES)

    def migrate(self, mode: str = "tcp", timeout: float = MIGRATE_TIMEOUT) -> float:
        """Live-migrate the guest to a new QEMU on this machine (`tcp` or
        `unix`); log in again afterwards. Returns the seconds it took."""
        machine = self._machine()
        if self.remote is not None:
            self._call(self.remote.aclose(), 10, "closing the login before migrating")
        port = free_port()
        args = _forwarding(self._args, port)
        seconds: float = self._call(
            machine.migrate(mode, timeout, args=args), timeout + 30, f"migrating {self.name}"
        )
        self._args, self.port = args, port
        return seconds

    def power_off(self, timeout: float = POWER_OFF_TIMEOUT) -> str:
        """ACPI power-off (then `quit`, then SIGKILL); how it ended."""
        if self.machine is None:
            return "never powered on"
        if self.remote is not None:
            self._call(self.remote.aclose(), 10, "closing the login")
        ended: str = self._call(self.machine.power_off(timeout), timeout + 30, "power off")
        return ended

    # --- the monitor --------------------------------------------------------------

    def qmp(self, command: str, **arguments: Any) -> dict[str, Any]:
        """A QMP command's reply: `{'return': ...}`, or `{'error': {'desc': ...}}`
        with QEMU's refusal."""
        machine = self._machine()
        try:
            value = self._loop.run(machine.qmp(command, 60.0, **arguments), 70, f"QMP {command}")
        except ProvisionError as exc:
            return {"error": {"desc": str(exc).removeprefix(f"QMP {command}: ")}}
        return {"return": value}

    def screendump(self, path: str | Path) -> dict[str, Any]:
        """The guest's screen as a PPM image at `path` (written by QEMU)."""
        return self.qmp("screendump", filename=str(Path(path).resolve()))

    # --- the end ------------------------------------------------------------------

    def close(self) -> dict[str, Any]:
        """Whatever the test left: logged out, QEMU ended (SIGKILL, if it
        still runs), its scratch removed; the VM's record, also written to
        `vm.json` next to its console."""
        machine = self.machine
        if self.remote is not None:
            self._call(self.remote.aclose(), 10, "closing the login")
        if machine is not None:
            if machine.returncode is None:
                self.left_running = True
                self._call(machine.kill(), 30, "killing the VM")
                machine.ended_by = machine.ended_by or "killed after the test"
            self._call(machine.close(), 30, "closing the VM")
        record = self.record()
        if machine is not None:
            (self.folder / "vm.json").write_text(json.dumps(record, indent=2) + "\n")
        return record

    def record(self) -> dict[str, Any]:
        machine = self.machine
        return {
            "name": self.name,
            "accel": self._guest.accel,
            "powered_on": machine is not None,
            "boot_to_login_s": (
                round(self.boot_to_login, 3) if self.boot_to_login is not None else None
            ),
            "migrations": list(machine.migrations) if machine is not None else [],
            "ended_by": machine.ended_by if machine is not None else None,
            "exit_status": machine.returncode if machine is not None else None,
            "left_running": self.left_running,
            "folder": str(self.folder),
        }
