"""VM tests (the avocado-virt contract): a case of kind `vm` names a Python
file of `phalanx.virt.VirtTest` classes (`test: qemu/boot.py`), optionally
which classes (`class:`) and which of their methods (`tests:`), and how its
VMs are made (`accel: kvm|tcg`, `ram_mb:`). On every host of the case's
roles the agent runs each test method with a VM of its own; `self.params`
is the suite's and the case's `params:`.

Each test method is reported (passed, failed, error, skipped, with the
reason and its traceback's tail); the case fails when one failed or ended
in error (a test result either way), and is an error only when the tests
could not be started. The module's source travels in the task.
"""

from __future__ import annotations

import ast
from typing import Any

from phalanx.kinds import checks
from phalanx.kinds.base import CaseSpec, OptionError, StageContext, judge_exit
from phalanx.kinds.scripts import OwnRun, takes_part
from phalanx.model import Case, Status
from phalanx.tasks import Outcome, Task, VmTask

ACCELS = ("kvm", "tcg")
VIRT_BASES = ("VirtTest", "test.VirtTest")  # how a test module names the base


def module_name(file: str) -> str:
    """`qemu/boot.py` → `qemu.boot`, as the loader's module reader finds it."""
    stem = file.removesuffix(".py")
    return stem.replace("/", ".")


def _names(value: Any, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise OptionError("must be a name or a list of names", key)
    return tuple(items)


def test_methods(tree: ast.Module) -> dict[str, set[str]]:
    """Each class the module defines → the methods written in it."""
    return {
        node.name: {
            item.name
            for item in node.body
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }


class VmTests(OwnRun):
    name = "vm"
    options = frozenset({"test", "class", "tests", "accel", "ram_mb"})

    def prepare(self, spec: CaseSpec) -> dict[str, Any]:
        opts = spec.options
        file = checks.text(opts, "test", required=True)
        assert file is not None
        module = module_name(file)
        if not module or any(not part.isidentifier() for part in module.split(".")):
            raise OptionError(f"{file!r}: expected a Python file such as qemu/boot.py", "test")
        source = checks.source(spec, module, "test")
        checks.defined_names(module, source, "test")  # a syntax error, said at load
        classes = test_methods(ast.parse(source))
        chosen = _names(opts["class"], "class") if opts.get("class") is not None else ()
        for name in chosen:
            if name not in classes:
                raise OptionError(f"{file} defines no class {name}", "class")
        tests = _names(opts["tests"], "tests") if opts.get("tests") is not None else ()
        written = set().union(*(classes[c] for c in chosen)) if chosen else None
        for name in tests:
            if written is not None and name not in written:
                raise OptionError(f"class {', '.join(chosen)} has no method {name}", "tests")
        checks.choice(opts, "accel", ACCELS)
        checks.integer(opts, "ram_mb", least=64)
        return {**opts, "module": module, "source": source}

    def run_task(self, ctx: StageContext, case: Case) -> Task | None:
        if not takes_part(case, ctx.host):
            return None
        opts = case.options
        return VmTask(
            case=case.name,
            module=opts["module"].rpartition(".")[2],
            source=opts["source"],
            file=opts["test"],
            classes=_names(opts["class"], "class") if opts.get("class") is not None else (),
            tests=_names(opts["tests"], "tests") if opts.get("tests") is not None else (),
            params={**ctx.suite.params, **case.params},
            accel=str(opts.get("accel") or ""),
            ram_mb=int(opts.get("ram_mb") or 256),
        )

    def judge_run(self, ctx: StageContext, outcome: Outcome) -> tuple[Status, str | None]:
        data = outcome.data if isinstance(outcome.data, dict) else {}
        if data.get("error"):
            return Status.ERROR, str(data["error"])
        tests = [t for t in data.get("tests", []) if isinstance(t, dict)]
        # A method's ERROR (avocado's word: it raised something other than a
        # failed assertion, e.g. a command missing in the guest) is what the
        # test found, as its FAIL is: the case failed, exit 1. Only tests
        # that could not be started at all (`error` above) are the
        # infrastructure's, exit 3.
        bad = [t for t in tests if t.get("status") in ("error", "failed")]
        if bad:
            return Status.FAILED, "; ".join(
                f"{t.get('name')} {t.get('status')}: {t.get('reason')}" for t in bad
            )
        status, reason = judge_exit(outcome, ctx)
        if status is not Status.PASSED:
            return status, reason
        if not tests:
            return Status.ERROR, "no VM test ran"
        return Status.PASSED, None


VM = VmTests()
