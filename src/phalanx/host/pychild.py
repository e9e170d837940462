"""The process a `python` task runs in: imports the shipped test modules,
constructs each class with its config, runs it, reports `final_results`.

    python -m phalanx.host.pychild TASK.json RESULT.json
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import phalanx
from phalanx.tasks import PythonTask, from_json
from phalanx.tasks.python import result_keys


def install_modules(sources: dict[str, str], root: Path) -> None:
    """Write the shipped sources where `import` finds them (dotted names
    become packages)."""
    for name, source in sources.items():
        parts = name.split(".")
        folder = root.joinpath(*parts[:-1])
        folder.mkdir(parents=True, exist_ok=True)
        for depth in range(1, len(parts)):
            init = root.joinpath(*parts[:depth], "__init__.py")
            if not init.exists():
                init.write_text("")
        (folder / f"{parts[-1]}.py").write_text(source)
    sys.path.insert(0, str(root))


def load_class(spec: str) -> type:
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"{spec!r}: expected module:ClassName")
    found = getattr(importlib.import_module(module), name, None)
    if not isinstance(found, type):
        raise ValueError(f"{spec!r}: module {module!r} has no class {name!r}")
    return found


class _Test:
    """One test object and the thread that runs it; records what it raised."""

    def __init__(self, spec: str, cls: type, config: dict[str, Any]) -> None:
        self.spec = spec
        self.error: str | None = None
        self.obj = cls(dict(config))
        if isinstance(self.obj, threading.Thread):
            self.thread = self.obj
            original = self.obj.run

            def guarded() -> None:
                self._guard(original)

            self.obj.run = guarded  # type: ignore[method-assign]
        else:
            self.thread = threading.Thread(target=self._guard, args=(self.obj.run,), daemon=True)

    def _guard(self, run: Any) -> None:
        try:
            run()
        except BaseException as exc:
            traceback.print_exc(file=sys.stdout)
            self.error = f"{self.spec} raised {type(exc).__name__}: {exc}"

    @property
    def final_results(self) -> Any:
        return getattr(self.obj, "final_results", None)

    def verdict(self, failures: list[tuple[object, str]]) -> str | None:
        """Why the test failed though it raised nothing: its phalanx.fail
        calls, or `passed = False` on the object."""
        said = [reason for thread, reason in failures if thread is self.thread]
        if said:
            return f"{self.spec} failed: {'; '.join(said)}"
        if getattr(self.obj, "passed", True) is False:
            shown = json.dumps(self.final_results, default=repr)
            return f"{self.spec} failed: passed is False (final_results: {shown[:200]})"
        return None


def run(task: PythonTask) -> dict[str, Any]:
    failures: list[tuple[object, str]] = []
    phalanx._failures = failures
    config = dict(task.config)
    delay = task.test_start_delay
    specs = list(task.classes)
    tests: list[_Test] = []
    errors: list[str] = []
    concurrent = task.test_mode == "concurrent"
    for spec in specs:
        try:
            test = _Test(spec, load_class(spec), config)
        except Exception as exc:
            traceback.print_exc(file=sys.stdout)
            errors.append(f"{spec}: {type(exc).__name__}: {exc}")
            continue
        tests.append(test)
        if not concurrent:
            _start(test, delay)
            test.thread.join()
    if concurrent:
        for test in tests:
            _start(test, delay)
        for test in tests:
            test.thread.join()
    for test in tests:
        errors += [e for e in (test.error, test.verdict(failures)) if e]
    known = {t.thread for t in tests}
    # From a thread the test started itself: the test it came from is unknown.
    errors += [f"failed: {reason}" for thread, reason in failures if thread not in known]
    keys = result_keys(task.classes)
    results = {keys[t.spec]: t.final_results for t in tests}
    for key, value in results.items():
        print(f"final_results[{key}]: {json.dumps(value, default=repr)}", flush=True)
    if not task.give_results:
        print("final_results not kept: this server does not give results", flush=True)
        results = {}
    return {"final_results": results, "error": "; ".join(errors) or None}


def _start(test: _Test, delay: float) -> None:
    if delay > 0:
        time.sleep(delay)
    test.thread.start()


def main(argv: list[str]) -> int:
    task_path, result_path = Path(argv[0]), Path(argv[1])
    task = from_json(PythonTask, json.loads(task_path.read_text()))
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s"
    )
    install_modules(task.modules, task_path.parent / "modules")
    report = run(task)
    # Not every final_results is JSON; what is not is kept as its repr.
    result_path.write_text(json.dumps(report, default=repr))
    return 1 if report["error"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
