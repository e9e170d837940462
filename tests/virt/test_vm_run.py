"""VM tests through `phalanx run` on real QEMU guests under TCG: a test of
our own powering on, running commands over SSH, migrating twice (the
guest's uptime carries on) and powering off, next to a failing test method;
avocado-virt's boot and migration tests in their own shape (only the import
line differs; written here in our words, with their Python 2 `xrange`); a
usb_boot-style monitor check. Nothing is left running afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from phalanx.providers.vmimage import Image, RootDisk
from tests.tree.helpers import results
from tests.vms import vm_missing

MISSING = vm_missing()
RUN_TIMEOUT = 1200  # seconds: four guests booted one after the other under TCG on a busy machine

LIFECYCLE = """
import json
import os

from phalanx.virt import exceptions, test


class LifecycleTest(test.VirtTest):
    def uptime(self):
        return float(self.vm.remote.run("cut -d' ' -f1 /proc/uptime").stdout)

    def test_ssh_migrate_power_off(self):
        self.vm.power_on()
        remote = self.vm.login_remote()
        said = remote.run("echo hello; echo oops >&2")
        self.assertEqual((said.exit_status, said.stdout, said.stderr), (0, "hello\\n", "oops\\n"))
        self.assertEqual(remote.run("exit 3", ignore_status=True).exit_status, 3)
        try:
            remote.run("exit 4")
        except exceptions.CmdError as exc:
            self.assertEqual(exc.result.exit_status, 4)
        else:
            self.fail("a failing command raised nothing")
        uptimes = [self.uptime()]
        for _ in xrange(2):
            self.vm.migrate("tcp")
            self.vm.login_remote()
            uptimes.append(self.uptime())
        self.whiteboard = json.dumps(uptimes)
        self.assertEqual(self.vm.qmp("query-status")["return"]["status"], "running")
        self.assertIn("error", self.vm.qmp("no-such-command"))
        self.vm.screendump(os.path.join(self.outputdir, "screen.ppm"))
        self.assertEqual(self.vm.power_off(), "acpi")

    def test_fails(self):
        self.log.info("checking the answer")
        self.assertEqual(self.params.get("answer"), 41, "the answer is not 41")
"""

# avocado-virt-tests' qemu/boot.py and qemu/migration/migration.py, in
# their shape: the import line is the only change a test needs.
BOOT = """
from phalanx.virt import test


class BootTest(test.VirtTest):

    def test_boot(self):
        self.vm.power_on()
        self.vm.login_remote()

    def tearDown(self):
        if self.vm:
            self.vm.power_off()
"""

MIGRATION = """
from phalanx.virt import test


class MigrationTest(test.VirtTest):

    def test_migrate(self):
        self.vm.power_on()
        mode = self.params.get('migration_mode', default='tcp')
        for _ in xrange(self.params.get('migration_iterations', default=4)):
            self.vm.migrate(mode)
            self.vm.login_remote()

    def cleanup(self):
        if self.vm:
            self.vm.power_off()
"""

USB = """
from phalanx.virt import test
from phalanx.virt import exceptions


class USBBootTest(test.VirtTest):

    def setUp(self):
        super(USBBootTest, self).setUp()
        self.device_name = self.params.get('device_name', default='QEMU USB Tablet')
        self.vm.devices.add_cmdline(self.params.get(
            'usb_bus_cmdline', default='-device piix3-usb-uhci,id=usbtest,bus=pci.0,addr=05'))
        self.vm.devices.add_cmdline(self.params.get(
            'device_cmdline', default='-device usb-tablet,id=usb-tablet,bus=usbtest.0,port=1'))
        self.vm.power_on()
        self.vm.login_remote()
        self.vm.remote.run('dmesg -c')

    def test_shows_monitor(self):
        reply = self.vm.qmp('human-monitor-command', **{'command-line': 'info usb'})
        if self.device_name not in reply['return']:
            raise exceptions.TestFail('no %s in info usb' % self.device_name)

    def tearDown(self):
        if self.vm:
            self.vm.power_off()
"""

SUITE = """\
name: vms
cluster: one
logs: [vm/*/*/*]
params: {answer: 42}
tests:
  - name: lifecycle
    kind: vm
    test: lifecycle.py
  - name: boot
    kind: vm
    test: qemu/boot.py
  - name: migration
    kind: vm
    test: qemu/migration/migration.py
    params: {migration_iterations: 2}
  - name: usb
    kind: vm
    test: qemu/usb_boot.py
    tests: [test_shows_monitor]
"""


def repo(root: Path) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "one.yaml").write_text("name: one\nhosts:\n  - name: h1.vm.test\n")
    suite = root / "test-suites" / "vms"
    for path, text in {
        "suite.yaml": SUITE,
        "lifecycle.py": LIFECYCLE,
        "qemu/boot.py": BOOT,
        "qemu/migration/migration.py": MIGRATION,
        "qemu/usb_boot.py": USB,
    }.items():
        (suite / path).parent.mkdir(parents=True, exist_ok=True)
        (suite / path).write_text(text)
    return root


def running_under(folder: Path) -> list[str]:
    """Command lines of processes that name `folder` (a QEMU's console is
    under the run's host folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in line and proc.name != str(os.getpid()):
            found.append(line)
    return found


def reports_of(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (stage,) = [s for s in case["stages"] if s["name"] == "run"]
    (host,) = stage["hosts"]
    return {t["name"]: t for t in host["data"]["tests"]}


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_vm_tests_power_on_log_in_migrate_and_power_off_through_phalanx_run(
    tmp_path: Path, vm_images: tuple[Image, RootDisk]
) -> None:
    root = repo(tmp_path / "repo")
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(root), "-s", "vms", "--plain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, "PHALANX_QEMU_ACCEL": "tcg"},
    )
    said = done.stdout + done.stderr
    assert done.returncode == 1, said  # one test method failed
    data = results(tmp_path)
    cases = {c["name"]: c for c in data["cases"]}
    assert {n: c["status"] for n, c in cases.items()} == {
        "lifecycle": "failed",
        "boot": "passed",
        "migration": "passed",
        "usb": "passed",
    }, said

    # Each test method is reported; the failing one with its message.
    lifecycle = reports_of(cases["lifecycle"])
    assert lifecycle["LifecycleTest.test_fails"]["status"] == "failed"
    assert cases["lifecycle"]["reason"] == (
        "run failed: h1.vm.test (LifecycleTest.test_fails failed: test_fails: TestFail:"
        " 42 != 41 : the answer is not 41)"
    )
    assert "self.assertEqual" in lifecycle["LifecycleTest.test_fails"]["traceback"]
    passed = lifecycle["LifecycleTest.test_ssh_migrate_power_off"]
    assert passed["status"] == "passed", passed
    uptimes = json.loads(passed["whiteboard"])
    assert len(uptimes) == 3 and uptimes == sorted(uptimes) and uptimes[0] < uptimes[-1]
    vm = passed["vm"]
    assert [m["mode"] for m in vm["migrations"]] == ["tcp", "tcp"]
    assert vm["ended_by"] == "acpi" and vm["left_running"] is False
    assert vm["boot_to_login_s"] > 0
    assert lifecycle["LifecycleTest.test_fails"]["vm"]["powered_on"] is False

    assert (
        len(reports_of(cases["migration"])["MigrationTest.test_migrate"]["vm"]["migrations"]) == 2
    )
    assert reports_of(cases["boot"])["BootTest.test_boot"]["vm"]["ended_by"] == "acpi"
    assert list(reports_of(cases["usb"])) == ["USBBootTest.test_shows_monitor"]

    # The stage's output says what ran; the VMs' logs are kept with the run.
    (run_dir,) = (tmp_path / "phalanx-results").iterdir()
    output = (run_dir / "cases" / "lifecycle" / "run" / "h1.vm.test.log").read_text()
    assert "PASS LifecycleTest.test_ssh_migrate_power_off" in output
    assert "FAIL LifecycleTest.test_fails" in output and "checking the answer" in output
    logs = run_dir / "cases" / "lifecycle" / "run" / "logs" / "h1.vm.test"
    prefix = "vm_lifecycle_LifecycleTest.test_ssh_migrate_power_off_"
    events = (logs / f"{prefix}qmp-events.jsonl").read_text()
    # Both sources were ended after their migration; the guest powered off by ACPI.
    assert events.count('"host-qmp-quit"') == 2 and '"POWERDOWN"' in events
    assert "sshd started" in (logs / f"{prefix}console.log").read_text()
    assert json.loads((logs / f"{prefix}vm.json").read_text())["migrations"] == vm["migrations"]
    screen = next(run_dir.glob("hosts/*/vm/lifecycle/*test_ssh_migrate_power_off/screen.ppm"))
    assert screen.read_bytes().startswith(b"P6")
    junit = (run_dir / "junit.xml").read_text()
    assert 'name="LifecycleTest.test_fails"' in junit

    assert running_under(tmp_path) == []


HANGS = """
import time

from phalanx.virt import test


class HangTest(test.VirtTest):
    def test_hangs(self):
        self.vm.power_on()
        self.log.info("powered on; hanging")
        time.sleep(3600)
"""


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
@pytest.mark.timeout(300)
def test_a_vm_test_that_outlives_its_stage_timeout_leaves_no_qemu_behind(
    tmp_path: Path, vm_images: tuple[Image, RootDisk]
) -> None:
    """QEMU runs in a process group of its own; it still ends with the
    stage (the agent ends what carries the stage's mark)."""
    root = tmp_path / "repo"
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "one.yaml").write_text("name: one\nhosts:\n  - name: h1.vm.test\n")
    suite = root / "test-suites" / "hang"
    suite.mkdir(parents=True)
    (suite / "hangs.py").write_text(HANGS)
    (suite / "suite.yaml").write_text(
        "name: hang\ncluster: one\ntests:\n  - {name: hang, kind: vm, test: hangs.py, timeout: 20}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(root), "-s", "hang", "--plain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PHALANX_QEMU_ACCEL": "tcg"},
    )
    said = done.stdout + done.stderr
    (case,) = results(tmp_path)["cases"]
    assert case["status"] == "timeout", said
    (run_dir,) = (tmp_path / "phalanx-results").iterdir()
    assert next(run_dir.glob("hosts/*/vm/hang/HangTest.test_hangs/qemu.pid")).is_file()
    assert running_under(tmp_path) == []


# A VM test whose guest lacks a command (what avocado reports as ERROR):
# a test result, exit 1, not the infrastructure error of exit 3.
GUEST_LACKS = """
from phalanx.virt import test


class LacksTest(test.VirtTest):
    def test_needs_lsusb(self):
        raise OSError("lsusb: command not found in the guest")
"""


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
@pytest.mark.timeout(600)
def test_a_vm_tests_error_is_a_failed_case_not_an_infrastructure_error(
    tmp_path: Path, vm_images: tuple[Image, RootDisk]
) -> None:
    root = tmp_path / "repo"
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "one.yaml").write_text("name: one\nhosts:\n  - name: h1.vm.test\n")
    suite = root / "test-suites" / "vms"
    suite.mkdir(parents=True)
    (suite / "lacks.py").write_text(GUEST_LACKS)
    (suite / "suite.yaml").write_text(
        "name: vms\ncluster: one\ntests:\n  - {name: lacks, kind: vm, test: lacks.py}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(suite), "--plain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=540,
        env={**os.environ, "PHALANX_QEMU_ACCEL": "tcg"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (case,) = results(tmp_path)["cases"]
    assert case["status"] == "failed"
    assert "LacksTest.test_needs_lsusb error: test_needs_lsusb: OSError: lsusb" in case["reason"]
    assert reports_of(case)["LacksTest.test_needs_lsusb"]["status"] == "error"
