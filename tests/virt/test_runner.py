"""phalanx.virt without a VM: params, the lifecycle of each test method
and how it ends, Python 2 names, discovery, remote results, devices. A VM
that is never powered on starts no QEMU, so none of these needs one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from phalanx.providers.vmimage import Image, RootDisk
from phalanx.virt import exceptions, runner
from phalanx.virt import test as virt_test
from phalanx.virt.devices import Devices
from phalanx.virt.loop import Loop
from phalanx.virt.remote import Remote
from phalanx.virt.test import Params
from phalanx.virt.vm import Guest

CALLS: list[str] = []  # what the lifecycle test's objects did, in order
OBJECTS: list[object] = []  # the objects setUp and the test methods ran on (kept alive)

LIFECYCLE = """
from phalanx.virt import test, exceptions
from tests.virt.test_runner import CALLS, OBJECTS


class Life(test.VirtTest):
    def setUp(self):
        CALLS.append("setUp %s" % self.name)
        OBJECTS.append(self)
        if self.params.get("break_setup", default=False):
            raise ValueError("setUp broke")

    def test_b_passes(self):
        CALLS.append("test_b_passes")
        OBJECTS.append(self)
        self.whiteboard = "seen %d" % sum(xrange(4))

    def test_a_fails(self):
        CALLS.append("test_a_fails")
        self.assertEqual(1, 2, "one is not two")

    def test_c_raises(self):
        CALLS.append("test_c_raises")
        {}["missing"]

    def test_d_says_fail(self):
        raise exceptions.TestFail("the guest said no")

    def test_e_cancels(self):
        self.cancel("not on this host")

    def tearDown(self):
        CALLS.append("tearDown")

    def cleanup(self):
        CALLS.append("cleanup")
"""


@pytest.fixture
def loop() -> Any:
    made = Loop()
    yield made
    made.close()


def guest(tmp_path: Path) -> Guest:
    """What VMs would boot; these tests never power one on, so no image is built."""
    image = Image(tmp_path, tmp_path / "vmlinux", tmp_path / "initramfs.img", "0", built=False)
    root_disk = RootDisk(tmp_path, tmp_path / "root.ext4", "/usr/local/bin/python3", built=False)
    return Guest(image=image, root_disk=root_disk, accel="tcg", ram_mb=128, private=tmp_path / "p")


def run_all(tmp_path: Path, loop: Loop, source: str, **params: Any) -> dict[str, dict[str, Any]]:
    module = runner.load_module("lifecycle", source, tmp_path / "mod" / "lifecycle.py")
    lines: list[str] = []
    reports = [
        runner.run_test(
            cls,
            method,
            loop=loop,
            guest=guest(tmp_path),
            params=params,
            folder=tmp_path / "vm",
            say=lines.append,
        )
        for cls in runner.test_classes(module, ())
        for method in runner.test_methods(cls, ())
    ]
    assert any(line.startswith("=== Life.") for line in lines)
    return {r["name"]: r for r in reports}


def test_each_test_method_runs_on_its_own_object_through_the_whole_lifecycle(
    tmp_path: Path, loop: Loop
) -> None:
    CALLS.clear()
    OBJECTS.clear()
    found = run_all(tmp_path, loop, LIFECYCLE)
    # In the order they are written, each on a fresh object.
    assert list(found) == [f"Life.test_{n}" for n in ("b_passes", "a_fails", "c_raises",
                                                       "d_says_fail", "e_cancels")]  # fmt: skip
    assert CALLS[:5] == [
        "setUp Life.test_b_passes", "test_b_passes", "tearDown", "cleanup", "setUp Life.test_a_fails",
    ]  # fmt: skip
    assert OBJECTS[0] is OBJECTS[1]  # setUp and the method: the same object
    assert OBJECTS[2] is not OBJECTS[0]  # the next test's is another
    passed = found["Life.test_b_passes"]
    assert passed["status"] == "passed" and passed["reason"] is None
    assert passed["whiteboard"] == "seen 6"  # xrange, as a Python 2 test has it
    assert passed["vm"]["powered_on"] is False
    failed = found["Life.test_a_fails"]
    assert failed["status"] == "failed"
    assert "test_a_fails: " in failed["reason"] and "one is not two" in failed["reason"]
    assert 'self.assertEqual(1, 2, "one is not two")' in failed["traceback"]
    errored = found["Life.test_c_raises"]
    assert errored["status"] == "error"
    assert errored["reason"] == "test_c_raises: KeyError: 'missing'"
    assert "lifecycle.py" in errored["traceback"]
    assert found["Life.test_d_says_fail"]["status"] == "failed"
    assert (
        found["Life.test_d_says_fail"]["reason"] == "test_d_says_fail: TestFail: the guest said no"
    )
    cancelled = found["Life.test_e_cancels"]
    assert cancelled["status"] == "skipped" and "not on this host" in cancelled["reason"]


def test_a_broken_setup_skips_the_test_body_but_not_teardown_and_cleanup(
    tmp_path: Path, loop: Loop
) -> None:
    CALLS.clear()
    found = run_all(tmp_path, loop, LIFECYCLE, break_setup=True)
    assert all(r["status"] == "error" for r in found.values())
    assert found["Life.test_a_fails"]["reason"] == "setUp: ValueError: setUp broke"
    assert not [c for c in CALLS if c.startswith("test_")]
    assert CALLS.count("tearDown") == CALLS.count("cleanup") == len(found)


def test_a_teardown_that_fails_makes_a_passing_test_an_error(tmp_path: Path, loop: Loop) -> None:
    source = """
from phalanx.virt import VirtTest

class Off(VirtTest):
    def action(self):  # the old style's test method
        pass

    def tearDown(self):
        self.vm.power_off()
        raise RuntimeError("could not tidy up")
"""
    module = runner.load_module("old_style", source, tmp_path / "old_style.py")
    (cls,) = runner.test_classes(module, ())
    assert runner.test_methods(cls, ()) == ["action"]
    report = runner.run_test(cls, "action", loop=loop, guest=guest(tmp_path), params={},
                             folder=tmp_path, say=lambda _: None)  # fmt: skip
    assert report["status"] == "error"
    assert report["reason"] == "tearDown: RuntimeError: could not tidy up"


def test_python_2_names_are_in_the_module_unless_it_defines_its_own(tmp_path: Path) -> None:
    module = runner.load_module(
        "py2", "xrange = 'mine'\nseen = [unicode(1), long('2'), basestring]\n", tmp_path / "py2.py"
    )
    assert module.xrange == "mine"
    assert module.seen == ["1", 2, str]
    other = runner.load_module("py2b", "n = list(xrange(3))\n", tmp_path / "py2b.py")
    assert other.n == [0, 1, 2]


def test_discovery_names_what_it_cannot_find(tmp_path: Path) -> None:
    module = runner.load_module("none", "class NotATest:\n    pass\n", tmp_path / "none.py")
    with pytest.raises(runner.LoadError, match="module 'none' defines no VirtTest class"):
        runner.test_classes(module, ())
    module = runner.load_module("one", LIFECYCLE, tmp_path / "one.py")
    with pytest.raises(runner.LoadError, match="has no VirtTest class Missing"):
        runner.test_classes(module, ("Missing",))
    (cls,) = runner.test_classes(module, ("Life",))
    assert runner.test_methods(cls, ("test_e_cancels",)) == ["test_e_cancels"]
    with pytest.raises(runner.LoadError, match="class Life has no test method test_nope"):
        runner.test_methods(cls, ("test_nope",))


def test_params_read_as_avocado_reads_them() -> None:
    params = Params({"migration_mode": "unix", "iterations": 0})
    assert params.get("migration_mode", default="tcp") == "unix"
    assert params.get("iterations", default=4) == 0  # a given false value is kept
    assert params.get("absent", "/plugins/virt/*", "dflt") == "dflt"  # avocado's path is ignored
    assert params.get("absent") is None
    assert dict(params) == {"migration_mode": "unix", "iterations": 0}


def test_remote_run_raises_on_a_non_zero_status_unless_told_not_to(loop: Loop) -> None:
    class Connection:
        async def run(self, command: str, check: bool, timeout: float) -> Any:
            status = 0 if command == "true" else 3
            return SimpleNamespace(exit_status=status, stdout=f"ran {command}\n", stderr="bad\n")

        def close(self) -> None:
            pass

        async def wait_closed(self) -> None:
            pass

    remote = Remote(loop, Connection(), 2222)
    ok = remote.run("true")
    assert (ok.exit_status, ok.stdout, ok.stderr) == (0, "ran true\n", "bad\n")
    assert remote.run("false", ignore_status=True).exit_status == 3
    with pytest.raises(exceptions.CmdError, match=r"'false' failed with exit status 3: bad") as e:
        remote.run("false")
    assert e.value.result.exit_status == 3  # type: ignore[attr-defined]
    loop.run(remote.aclose(), 5, "close")
    with pytest.raises(exceptions.TestError, match="login_remote"):
        remote.run("true")


def test_devices_become_qemu_arguments() -> None:
    devices = Devices()
    devices.add_cmdline("-device piix3-usb-uhci,id=usbtest,bus=pci.0,addr=05")
    devices.add_cmdline("-device 'usb-tablet,id=tab,bus=usbtest.0'")
    devices.add_net()
    devices.add_drive("/tmp/data.img", format="raw")
    assert devices.args == [
        "-device", "piix3-usb-uhci,id=usbtest,bus=pci.0,addr=05",
        "-device", "usb-tablet,id=tab,bus=usbtest.0",
        "-netdev", "user,id=virt-net1",
        "-device", "virtio-net-pci,id=virt-nic2,netdev=virt-net1",
        "-drive", "file=/tmp/data.img,if=none,id=virt-drive3,format=raw",
        "-device", "virtio-blk-pci,id=virt-disk4,drive=virt-drive3",
    ]  # fmt: skip


def test_the_exceptions_mirror_avocados() -> None:
    assert issubclass(exceptions.TestFail, AssertionError)
    assert virt_test.VirtTest.failureException is exceptions.TestFail
    import phalanx.virt

    assert phalanx.virt.VirtTest is virt_test.VirtTest
