"""What a test adds to its VM's QEMU command line before `power_on()`, as
avocado-virt's `vm.devices` takes it."""

from __future__ import annotations

import shlex


class Devices:
    def __init__(self) -> None:
        self.args: list[str] = []
        self._count = 0

    def _id(self, given: str | None, prefix: str) -> str:
        if given:
            return given
        self._count += 1
        return f"{prefix}{self._count}"

    def add_cmdline(self, cmdline: str) -> None:
        """Extra QEMU arguments, split as a shell would
        (`-device usb-tablet,id=tablet,bus=usbtest.0`)."""
        self.args += shlex.split(cmdline)

    def add_net(
        self,
        netdev_type: str = "user",
        device_type: str = "virtio-net-pci",
        device_id: str | None = None,
        nic_id: str | None = None,
        mac_address: str | None = None,
    ) -> None:
        """One more network card (the VM has its own for SSH already)."""
        netdev = self._id(nic_id, "virt-net")
        device = f"{device_type},id={self._id(device_id, 'virt-nic')},netdev={netdev}"
        if mac_address:
            device += f",mac={mac_address}"
        self.args += ["-netdev", f"{netdev_type},id={netdev}", "-device", device]

    def add_drive(
        self,
        drive_file: str,
        device_type: str = "virtio-blk-pci",
        device_id: str | None = None,
        drive_id: str | None = None,
        format: str | None = None,
    ) -> None:
        """A disk image file as one more drive; `format` (raw, qcow2) spares
        QEMU its guess, which it refuses to write block 0 of a raw image with."""
        drive = self._id(drive_id, "virt-drive")
        spec = f"file={drive_file},if=none,id={drive}"
        if format:
            spec += f",format={format}"
        self.args += [
            "-drive", spec,
            "-device", f"{device_type},id={self._id(device_id, 'virt-disk')},drive={drive}",
        ]  # fmt: skip
