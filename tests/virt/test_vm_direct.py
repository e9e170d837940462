"""A VM test run in this process on a real QEMU guest: a guest that does
not answer within the login timeout is the test's error with its console's
last lines, and a VM the test leaves running is killed after it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from phalanx.providers.vmimage import Image, RootDisk
from phalanx.virt import runner
from phalanx.virt.loop import Loop
from phalanx.virt.vm import Guest
from tests.processes import alive
from tests.vms import vm_missing

MISSING = vm_missing()

IMPATIENT = """
from phalanx.virt import test


class Impatient(test.VirtTest):
    def test_login_too_soon(self):
        self.vm.power_on()
        self.vm.login_remote(timeout=0.5)
"""


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
@pytest.mark.timeout(180)
def test_a_guest_not_up_in_time_is_an_error_with_its_console_and_is_killed_after(
    tmp_path: Path, vm_images: tuple[Image, RootDisk]
) -> None:
    image, root_disk = vm_images
    module = runner.load_module("impatient", IMPATIENT, tmp_path / "impatient.py")
    (cls,) = runner.test_classes(module, ())
    loop = Loop()
    private = Path(tempfile.mkdtemp(prefix="phalanx-virt-test-"))  # short: QMP's socket is below
    guest = Guest(image=image, root_disk=root_disk, accel="tcg", ram_mb=256, private=private)
    try:
        report = runner.run_test(cls, "test_login_too_soon", loop=loop, guest=guest, params={},
                                 folder=tmp_path / "vm", say=print)  # fmt: skip
    finally:
        loop.close()
    assert report["status"] == "error"
    reason = report["reason"]
    assert reason.startswith(
        "test_login_too_soon: TestError: no SSH login to the guest within 0.5s"
    )
    assert "the console's last lines:" in reason
    vm = report["vm"]
    assert vm["left_running"] is True and vm["ended_by"] == "killed after the test"
    pid = int((tmp_path / "vm" / "Impatient.test_login_too_soon" / "qemu.pid").read_text())
    assert not alive(pid)
    assert list(private.iterdir()) == []  # the VM's scratch is gone
    private.rmdir()
