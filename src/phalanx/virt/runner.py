"""Running a VM test module: load it (with the Python 2 names avocado-virt
tests use), find its VirtTest classes and their test methods, run each on
an object and a VM of its own, and report each one.

A module is loaded with `xrange`, `unicode`, `basestring`, `long`, `unichr`
and `raw_input` already in its namespace (bound to their Python 3
equivalents), so a test written for Python 2 runs unchanged; a module that
defines them itself keeps its own."""

from __future__ import annotations

import logging
import re
import shutil
import sys
import tempfile
import time
import traceback
import types
import unittest
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.virt import exceptions
from phalanx.virt.loop import Loop
from phalanx.virt.test import VirtTest
from phalanx.virt.vm import VM, Guest, host_name

PY2_NAMES: dict[str, Any] = {
    "xrange": range,
    "unicode": str,
    "basestring": str,
    "long": int,
    "unichr": chr,
    "raw_input": input,
}
TRACEBACK_LINES = 12  # of a failed test's traceback, in its report
OLD_STYLE = "action"  # avocado's test method before test_*


class LoadError(Exception):
    """The module cannot be loaded, or holds no test it was asked for."""


def load_module(name: str, source: str, path: Path) -> types.ModuleType:
    """`source` as module `name`, its code at `path` (for tracebacks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    module.__dict__.update(PY2_NAMES)
    sys.modules[name] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def test_classes(module: types.ModuleType, names: tuple[str, ...]) -> list[type[VirtTest]]:
    """The module's own VirtTest classes (or the ones named), in order."""
    found = {
        obj.__name__: obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, VirtTest)
        and obj is not VirtTest
        and obj.__module__ == module.__name__
    }
    if not names:
        if not found:
            raise LoadError(f"module {module.__name__!r} defines no VirtTest class")
        return list(found.values())
    missing = [n for n in names if n not in found]
    if missing:
        raise LoadError(f"module {module.__name__!r} has no VirtTest class {', '.join(missing)}")
    return [found[n] for n in names]


def test_methods(cls: type[VirtTest], names: tuple[str, ...]) -> list[str]:
    """The class's test methods in the order they are written: `test*`, or
    the old style's `action`; or the ones named."""
    written: list[str] = []
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith(("unittest", "phalanx.")) or klass is object:
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("test") and callable(value) and attr not in written:
                written.append(attr)
    if not written and callable(getattr(cls, OLD_STYLE, None)):
        written = [OLD_STYLE]
    if not names:
        if not written:
            raise LoadError(f"class {cls.__name__} has no test method (test_* or action)")
        return written
    missing = [n for n in names if not callable(getattr(cls, n, None))]
    if missing:
        raise LoadError(f"class {cls.__name__} has no test method {', '.join(missing)}")
    return list(names)


@dataclass
class Verdict:
    status: str = "passed"  # passed, failed, error, skipped
    reason: str | None = None
    traceback: str | None = None

    def take(self, step: str, exc: BaseException) -> None:
        """The first problem decides; a later one only adds to the reason
        when the test had passed so far (a tearDown that failed)."""
        if self.status != "passed":
            return
        if isinstance(exc, exceptions.TestBaseException):
            self.status = exc.status
        elif isinstance(exc, unittest.SkipTest):
            self.status = "skipped"
        elif isinstance(exc, AssertionError):
            self.status = "failed"
        else:
            self.status = "error"
        said = str(exc) or type(exc).__name__
        name = type(exc).__name__
        self.reason = f"{step}: {said}" if name in said else f"{step}: {name}: {said}"
        lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
        self.traceback = "\n".join(lines[-TRACEBACK_LINES:])


def run_test(
    cls: type[VirtTest],
    method: str,
    *,
    loop: Loop,
    guest: Guest,
    params: dict[str, Any],
    folder: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """One test method on its own object and VM; its report."""
    name = f"{cls.__name__}.{method}"
    vm_folder = folder / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    login = params.get("login_timeout")
    vm = VM(host_name(name), vm_folder, loop, guest, float(login) if login else None)
    verdict = Verdict()
    began = time.monotonic()
    say(f"=== {name}")
    test: VirtTest | None = None
    try:
        test = cls(method, vm=vm, params=params, log=logging.getLogger(f"virt.{name}"),
                   outputdir=vm_folder)  # fmt: skip
    except Exception as exc:
        verdict.take("creating the test", exc)
    if test is not None:
        steps: list[tuple[str, Callable[[], object]]] = [("setUp", test.setUp)]
        old_setup = getattr(test, "setup", None)
        if callable(old_setup):
            steps.append(("setup", old_setup))  # the old style's, with action()
        for step, call in [*steps, (method, getattr(test, method))]:
            try:
                call()
            except BaseException as exc:  # a test's SystemExit is its error too
                verdict.take(step, exc)
                break
        for step, call in (("tearDown", test.tearDown), ("cleanup", test.cleanup)):
            try:
                call()
            except BaseException as exc:
                verdict.take(step, exc)
    try:
        record = vm.close()
    except Exception as exc:
        verdict.take("ending the VM", exc)
        record = vm.record()
    seconds = time.monotonic() - began
    word = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}[verdict.status]
    say(f"{word} {name} ({seconds:.1f}s)" + (f": {verdict.reason}" if verdict.reason else ""))
    if verdict.traceback and verdict.status in ("failed", "error"):
        say(verdict.traceback)
    return {
        "name": name,
        "status": verdict.status,
        "reason": verdict.reason,
        "traceback": verdict.traceback,
        "seconds": round(seconds, 3),
        "whiteboard": str(test.whiteboard) if test is not None else "",
        "vm": record,
    }


def prepare_guest(loop: Loop, accel: str, ram_mb: int, private: Path) -> Guest:
    """The image and root disk (built once, cached), and the accelerator:
    the one asked for, or KVM where it works, else TCG."""
    from phalanx.providers import qemuaccel, vmimage

    image = vmimage.build_image()
    root_disk = vmimage.build_root_disk()
    if not accel:
        accel, why = loop.run(qemuaccel.choose_accel(image), 120, "probing KVM")
        logging.getLogger("phalanx.virt").info("accelerator %s: %s", accel, why)
    return Guest(image=image, root_disk=root_disk, accel=accel, ram_mb=ram_mb, private=private)


def run_module(
    module: types.ModuleType,
    classes: tuple[str, ...],
    tests: tuple[str, ...],
    *,
    params: dict[str, Any],
    folder: Path,
    accel: str = "",
    ram_mb: int = 256,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Every test of the module (or the ones named): their reports."""
    chosen = [(cls, test_methods(cls, tests)) for cls in test_classes(module, classes)]
    loop = Loop()
    private = Path(tempfile.mkdtemp(prefix="phalanx-virt-"))
    try:
        guest = prepare_guest(loop, accel, ram_mb, private)
        return [
            run_test(cls, method, loop=loop, guest=guest, params=params, folder=folder, say=say)
            for cls, methods in chosen
            for method in methods
        ]
    finally:
        loop.close()
        shutil.rmtree(private, ignore_errors=True)
