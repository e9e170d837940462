"""The process a `vm` task runs in: loads the shipped test module, runs its
VM tests (phalanx.virt), reports each.

    python -m phalanx.virt.child TASK.json RESULT.json

(It lives with phalanx.virt, not in phalanx.host: the host's runner only
names it, so the host never imports the VM code.)

Each test's VM keeps its console, QEMU's log, its QMP events and `vm.json`
(boot-to-login and migration timings) in `vm/<case>/<Class.test>/` under the
host's working directory: a suite's `logs:` (e.g. `vm/*/*/*`) brings them
into the run folder.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from phalanx.tasks import VmTask, from_json
from phalanx.virt import runner


def vm_folder(case: str) -> Path:
    return Path("vm") / re.sub(r"[^A-Za-z0-9_.-]", "_", case)


def run(task: VmTask, scratch: Path) -> dict[str, Any]:
    folder = vm_folder(task.case).resolve()
    try:
        module = runner.load_module(
            task.module, task.source, scratch / "modules" / f"{task.module}.py"
        )
        reports = runner.run_module(
            module,
            task.classes,
            task.tests,
            params=dict(task.params),
            folder=folder,
            accel=task.accel,
            ram_mb=task.ram_mb,
            say=lambda line: print(line, flush=True),
        )
    except Exception as exc:
        traceback.print_exc(file=sys.stdout)
        return {"error": f"{task.file}: {type(exc).__name__}: {exc}", "tests": [], "testcases": []}
    return {
        "error": None,
        "tests": reports,
        "testcases": [
            {
                "name": r["name"],
                "status": "passed" if r["status"] in ("passed", "skipped") else r["status"],
                "message": r["reason"] or "",
                "text": r["traceback"] or "",
            }
            for r in reports
        ],
        "folder": str(vm_folder(task.case)),
    }


def main(argv: list[str]) -> int:
    task_path, result_path = Path(argv[0]), Path(argv[1])
    task = from_json(VmTask, json.loads(task_path.read_text()))
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("asyncssh", "qemu.qmp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    report = run(task, task_path.parent)
    result_path.write_text(json.dumps(report, default=repr))
    good = report["error"] is None and all(
        r["status"] in ("passed", "skipped") for r in report["tests"]
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
