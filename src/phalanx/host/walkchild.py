"""The process a `walks` task runs in: installs the shipped actions module,
runs the walks with `run_tests`, and reports counts, failed walks and shrunk
walks as the host's data.

    python -m phalanx.host.walkchild TASK.json RESULT.json

The trace and log of the run are written under `walks/<case>/` in the host's
working directory (a suite's `logs:` can collect them), so a failed walk can
be replayed with `phalanx replay TRACE WALK_ID`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import traceback
import zipfile
from pathlib import Path
from typing import Any

from phalanx.combinatorial import DaskExecutor, Executor, ExecutorError, Results, run_tests
from phalanx.combinatorial.config import load_settings
from phalanx.combinatorial.executors import make_executor
from phalanx.combinatorial.names import resolve_class
from phalanx.host.pychild import install_modules
from phalanx.tasks import WalksTask, from_json

# Failed walks reported one by one (and as JUnit testcases); the rest are counted.
DETAILED_FAILURES = 200


def log_dir(case: str) -> Path:
    return Path("walks") / re.sub(r"[^A-Za-z0-9_.-]", "_", case)


def resolve_order(module: str, order: tuple[str, ...]) -> list[type]:
    return [resolve_class(name if ":" in name else f"{module}:{name}") for name in order]


def open_executor(task: WalksTask, modules_root: Path) -> Executor:
    settings = load_settings(None, executor=task.executor, max_workers=task.max_workers)
    executor = make_executor(settings.executor, settings.max_workers, settings.dask_timeout)
    if isinstance(executor, DaskExecutor) and task.modules:
        # Dask workers live elsewhere: hand them the shipped modules as one zip,
        # which each worker puts first on its sys.path and imports. Named by its
        # content, so that a changed module is a new file, never a stale cached one.
        files = sorted(modules_root.rglob("*.py"))
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(modules_root)).encode() + b"\0" + path.read_bytes())
        archive = modules_root.parent / f"phalanx-walks-{digest.hexdigest()[:16]}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for path in files:
                zf.write(path, path.relative_to(modules_root))
        try:
            executor.client.upload_file(str(archive), load=True)
        except Exception as exc:
            executor.close()
            raise ExecutorError(
                f"cannot upload the actions modules to dask workers: {exc}"
            ) from exc
    return executor


def report(results: Results) -> dict[str, Any]:
    trace = str(results.logs.trace) if results.logs else None
    shrunk_by_walk: dict[int, list[str]] = {}
    shrunk = []
    for s in results.shrunk:
        shrunk.append(
            {
                "from_walk_id": s.from_walk_id,
                "reproduced": s.reproduced,
                "walk": [repr(a) for a in s.walk],
                "actions": s.walk.to_json(),
                "message": s.message,
                "trace_id": s.trace_id,
                "text": str(s),
            }
        )
        shrunk_by_walk.setdefault(s.from_walk_id, []).append(str(s))
    failures, testcases = [], []
    for f in results.failures[:DETAILED_FAILURES]:
        failures.append(
            {
                "walk_id": f.walk_id,
                "error_type": f.error_type,
                "action": f.action,
                "message": f.message,
                "text": str(f),
            }
        )
        lines = [str(f)]
        if trace:
            lines.append(f"replay: phalanx replay {trace} {f.walk_id}")
        lines += shrunk_by_walk.get(f.walk_id, [])
        if f.traceback:
            lines.append(f.traceback)
        testcases.append(
            {
                "name": f"walk {f.walk_id}",
                "status": "failed",
                "message": str(f),
                "text": "\n".join(lines),
            }
        )
    return {
        "walk_count": results.walk_count,
        "segment_count": results.segment_count,
        "error_count": results.error_count,
        "cancel_count": results.cancel_count,
        "pruned_count": results.pruned_count,
        "elapsed": round(results.elapsed, 6),
        "strategy": results.strategy,
        "seed": results.seed,
        "executor": results.executor,
        "failed_tests": results.failed_tests,
        "failures": failures,
        "shrunk": shrunk,
        "trace": trace,
        "log": str(results.logs.log) if results.logs else None,
        # Read by the JUnit report: one testcase per failed walk, below the case's own.
        "testcases": testcases,
        "error": None,
        "infra_error": None,
    }


def run(task: WalksTask, modules_root: Path) -> dict[str, Any]:
    try:
        order = resolve_order(task.module, task.order)
        executor = open_executor(task, modules_root)
    except ExecutorError as exc:
        return {"infra_error": str(exc)}
    except Exception as exc:
        traceback.print_exc(file=sys.stdout)
        return {"error": f"{type(exc).__name__}: {exc}"}
    try:
        results = run_tests(
            order,
            state=task.state,
            log_dir=log_dir(task.case),
            verbose=task.verbose,
            executor=executor,
            strategy=task.strategy,
            seed=task.seed,
            shrink=task.shrink,
            modules=task.modules,  # kept in the trace: `phalanx replay` imports them from it
        )
    except ExecutorError as exc:
        traceback.print_exc(file=sys.stdout)
        return {"infra_error": str(exc)}
    except Exception as exc:
        traceback.print_exc(file=sys.stdout)
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        executor.close()
    data = report(results)
    print(results.summary(), flush=True)
    return data


def main(argv: list[str]) -> int:
    task_path, result_path = Path(argv[0]), Path(argv[1])
    task = from_json(WalksTask, json.loads(task_path.read_text()))
    root = task_path.parent / "modules"
    install_modules(task.modules, root)
    # Worker processes that do not fork from here (forkserver, spawn, dask-local)
    # find the shipped modules through the environment.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root), os.environ.get("PYTHONPATH")) if p
    )
    data = run(task, root)
    result_path.write_text(json.dumps(data, default=repr))
    return 0 if not (data.get("error") or data.get("infra_error") or data.get("error_count")) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
