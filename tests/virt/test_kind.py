"""The `vm` kind when a suite loads: what a case names is checked then,
with file:line:key errors, and the module's source travels in the task."""

from __future__ import annotations

from pathlib import Path

from phalanx.kinds.base import StageContext
from phalanx.kinds.vm import VM
from phalanx.load.repo import load_repo
from phalanx.tasks import VmTask

MODULE = """
from phalanx.virt import test


class BootTest(test.VirtTest):
    def test_boot(self):
        pass
"""


def repo(root: Path, cases: str) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "one.yaml").write_text("name: one\nhosts:\n  - name: h1.vm.test\n")
    suite = root / "test-suites" / "vms"
    (suite / "qemu").mkdir(parents=True)
    (suite / "qemu" / "boot.py").write_text(MODULE)
    (suite / "broken.py").write_text("def nope(:\n")
    (suite / "suite.yaml").write_text(
        f"name: vms\ncluster: one\nparams: {{mode: tcp}}\ntests:\n{cases}"
    )
    return root


def test_a_vm_case_becomes_a_task_with_its_module_and_params(tmp_path: Path) -> None:
    cases = """\
  - name: boot
    kind: vm
    test: qemu/boot.py
    class: BootTest
    tests: [test_boot]
    accel: tcg
    ram_mb: 192
    params: {migration_iterations: 2}
"""
    loaded = load_repo(repo(tmp_path, cases))
    assert loaded.errors == []
    suite = loaded.suites["vms"]
    (case,) = suite.cases
    assert VM.stages(case) == ("run",)
    ctx = StageContext(suite=suite, case=case, stage="run", host=suite.hosts[0], tags={})
    task = VM.task(ctx)
    assert task == VmTask(
        case="boot",
        module="boot",
        source=MODULE,
        file="qemu/boot.py",
        classes=("BootTest",),
        tests=("test_boot",),
        params={"mode": "tcp", "migration_iterations": 2},
        accel="tcg",
        ram_mb=192,
    )


def test_what_a_vm_case_names_wrongly_is_a_file_line_key_error(tmp_path: Path) -> None:
    cases = """\
  - name: missing
    kind: vm
    test: nowhere.py
  - name: no_class
    kind: vm
    test: qemu/boot.py
    class: NoSuch
  - name: no_method
    kind: vm
    test: qemu/boot.py
    class: BootTest
    tests: [test_nothing]
  - name: accel
    kind: vm
    test: qemu/boot.py
    accel: xen
  - name: syntax
    kind: vm
    test: broken.py
  - name: none
    kind: vm
"""
    loaded = load_repo(repo(tmp_path, cases))
    said = "\n".join(str(e) for e in loaded.errors)
    for problem in (
        "suite.yaml:7: tests.missing.test: module 'nowhere' not found",
        "suite.yaml:11: tests.no_class.class: qemu/boot.py defines no class NoSuch",
        "suite.yaml:16: tests.no_method.tests: class BootTest has no method test_nothing",
        "suite.yaml:20: tests.accel.accel: must be kvm or tcg, not 'xen'",
        "suite.yaml:23: tests.syntax.test: module 'broken'",
        "tests.none.test: must be non-empty text, not None",
    ):
        assert problem in said, said
