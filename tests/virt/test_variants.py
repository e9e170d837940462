"""avocado-virt tests keep their parameters in `<test>.py.data/*.yaml`
(usb_boot's four USB devices): each variant is a case (issue 23, item 19).
The files below have the shape of avocado-virt-tests' usb_boot.yaml and
run_iozone.yaml (a `!mux` at the top; a `!mux` deep inside)."""

from __future__ import annotations

import json
from pathlib import Path

from phalanx.load.errors import DefinitionErrors
from phalanx.load.repo import find_suite
from tests.test_cli import phalanx

USB_YAML = """\
!mux
usb_bus_cmdline: '-device piix3-usb-uhci,id=usbtest,bus=pci.0,addr=05'
check_cmd: "lsusb -v"
tablet:
    device_cmdline: '-device usb-tablet,id=usb-tablet,bus=usbtest.0,port=1'
    device_name: 'QEMU USB Tablet'
keyboard:
    device_cmdline: '-device usb-kbd,id=usb-kbd,bus=usbtest.0,port=1'
    device_name: 'QEMU USB Keyboard'
"""

IOZONE_YAML = """\
plugins:
    virt:
        guest:
            user: "someone"
        qemu:
            paths: !mux
                one:
                    qemu_bin: "/opt/qemu-one"
                two:
                    qemu_bin: "/opt/qemu-two"
"""

TEST = """\
from phalanx.virt import test


class DeviceTest(test.VirtTest):
    def test_device(self):
        self.whiteboard = self.params.get("device_name")
"""


def repo(root: Path, files: dict[str, str]) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "one.yaml").write_text("name: one\nhosts:\n  - name: h1.vm.test\n")
    suite = root / "test-suites" / "v"
    for path, text in {
        "suite.yaml": "name: v\ncluster: one\nparams: {check_cmd: lsusb}\ntests:\n"
        "  - {name: usb, kind: vm, test: qemu/usb_boot.py}\n"
        "  - {name: iozone, kind: vm, test: qemu/run_iozone.py, params: {user: me}}\n"
        "  - {name: plain, kind: vm, test: qemu/plain.py}\n",
        "qemu/usb_boot.py": TEST,
        "qemu/run_iozone.py": TEST,
        "qemu/plain.py": TEST,
        **files,
    }.items():
        (suite / path).parent.mkdir(parents=True, exist_ok=True)
        (suite / path).write_text(text)
    return suite


def test_each_variant_of_a_vm_tests_data_files_is_a_case(tmp_path: Path) -> None:
    suite = repo(
        tmp_path / "repo",
        {
            "qemu/usb_boot.py.data/usb_boot.yaml": USB_YAML,
            "qemu/run_iozone.py.data/run_iozone.yaml": IOZONE_YAML,
        },
    )
    listed = phalanx("run", str(suite), "--list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [r["name"] for r in json.loads(listed.stdout)] == [
        "usb[tablet]",
        "usb[keyboard]",
        "iozone[one]",
        "iozone[two]",
        "plain",
    ]
    cases = {c.name: c for c in find_suite(suite).cases}
    assert cases["usb[keyboard]"].params == {
        "usb_bus_cmdline": "-device piix3-usb-uhci,id=usbtest,bus=pci.0,addr=05",
        "check_cmd": "lsusb -v",
        "device_cmdline": "-device usb-kbd,id=usb-kbd,bus=usbtest.0,port=1",
        "device_name": "QEMU USB Keyboard",
    }
    # the variant's values over the case's; the rest of the case's stay
    assert cases["iozone[two]"].params == {"user": "someone", "qemu_bin": "/opt/qemu-two"}
    assert cases["plain"].params == {}
    # -t names a case and all its variants, or one variant
    every = phalanx("run", str(suite), "-t", "usb", "-t", "iozone[one]", "--list", cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert [ln.split()[0] for ln in every.stdout.splitlines()[:-1]] == [
        "usb[tablet]",
        "usb[keyboard]",
        "iozone[one]",
    ]
    chosen = phalanx("run", str(suite), "-k", "keyboard or two", "--list", cwd=tmp_path)
    assert [ln.split()[0] for ln in chosen.stdout.splitlines()[:-1]] == [
        "usb[keyboard]",
        "iozone[two]",
    ]


def test_a_broken_variants_file_names_its_file_and_line(tmp_path: Path) -> None:
    suite = repo(tmp_path / "repo", {"qemu/usb_boot.py.data/usb_boot.yaml": "a: 1\nb: [\n"})
    try:
        find_suite(suite)
    except DefinitionErrors as exc:
        (error,) = exc.errors
        assert error.file == suite / "qemu/usb_boot.py.data/usb_boot.yaml"
        assert error.line == 3 and "avocado variants file" in error.message
    else:
        raise AssertionError("a broken variants file loaded")
    done = phalanx("validate", str(tmp_path / "repo"), cwd=tmp_path)
    assert done.returncode == 2 and "usb_boot.yaml:3" in done.stderr
