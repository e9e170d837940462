"""``combtest.runner``: ``run_tests`` and ``replay_walk`` with py-combtest's signatures.

``run_tests`` runs the walks with phalanx's :func:`phalanx.combinatorial.run_tests`
and returns a :class:`Result`: it unpacks as py-combtest's 7-tuple, and any other
attribute of phalanx's Results (``failures``, ``summary()``...) reads through.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from phalanx.combinatorial.action import Action, SerialAction
from phalanx.combinatorial.compat import bootstrap
from phalanx.combinatorial.compat.encode import encode
from phalanx.combinatorial.compat.utils import get_my_IP
from phalanx.combinatorial.compat.walk import CancelWalk, WalkFailedError
from phalanx.combinatorial.logs import logger
from phalanx.combinatorial.plan import OrderEntry
from phalanx.combinatorial.replay import replay
from phalanx.combinatorial.results import Results, RunLogs
from phalanx.combinatorial.run import run_tests as _run_tests
from phalanx.combinatorial.walk import Walk, action_from_json

__all__ = [
    "CancelWalk",
    "ContinuingWalkServiceGroup",
    "MultistageWalkRunningService",
    "Result",
    "WalkFailedError",
    "replay_walk",
    "run_tests",
]


class MultistageWalkRunningService:
    """Marker for py-combtest's default ``runner_class``: phalanx runs no rpyc service."""


class ContinuingWalkServiceGroup:
    """Marker for py-combtest's default ``service_group_class``."""


class _Tuple(NamedTuple):
    walk_count: int
    error_count: int
    segment_count: int
    elapsed: float
    states: Any  # per worker, a list of states; None unless gather_states
    logs: Any  # CombtestLogs
    failed_tests: list[int]


class Result(_Tuple):
    """py-combtest's 7-tuple, with phalanx's Results behind it for everything else."""

    results: Results

    def __getattr__(self, name: str) -> Any:
        if name == "results":  # not set yet: no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.results, name)


class CombtestLogs(dict[str, Any]):
    """``{"master": path, "remote": {ip: (log, trace)}}``, as py-combtest's ``logs``.

    ``trace`` and ``log`` are phalanx's own files (see RunLogs), for
    ``phalanx replay`` and :func:`phalanx.combinatorial.replay_walk_by_id`.
    """

    def __init__(self, master: str, remote: dict[str, tuple[str | None, str | None]]) -> None:
        super().__init__(master=master, remote=remote)
        self.run_logs: RunLogs | None = None

    @property
    def trace(self) -> Path | None:
        return self.run_logs.trace if self.run_logs else None

    @property
    def log(self) -> Path | None:
        return self.run_logs.log if self.run_logs else None


_UNSUPPORTED = (
    "phalanx runs walks on its own executors (run_tests(executor=...)), not rpyc services"
)


def _reject(name: str, value: Any, default: Any) -> None:
    if value is not default:
        raise TypeError(f"run_tests({name}={value!r}) is not supported: {_UNSUPPORTED}")


def run_tests(
    walk_order: Sequence[OrderEntry],
    state: Any = None,
    verbose: int = 1,
    logger_port: int | None = None,
    runner_class: type = MultistageWalkRunningService,
    service_group_class: type = ContinuingWalkServiceGroup,
    service_infos: Iterable[Any] | None = None,
    service_handler_class: type = bootstrap.ServiceHandler_Local,
    max_thread_count: int | None = None,
    gather_states: bool | int = False,
    log_dir: str | Path | None = None,
    **phalanx_options: Any,
) -> Result:
    """py-combtest's ``run_tests``.

    Accepted as they are: ``walk_order`` (classes or option sets), ``state`` (each
    walk gets its own copy), ``verbose``, ``gather_states`` (True: per worker, the
    final states; 2: per worker, ``(state, info)`` pairs), ``log_dir``.
    ``max_thread_count`` caps phalanx's workers (``max_workers``). ``logger_port``
    is accepted and unused: workers return their logs with their results.
    ``runner_class``, ``service_group_class``, ``service_handler_class`` and
    ``service_infos`` are accepted only at their defaults (TypeError otherwise).
    Further keywords go to phalanx's run_tests (``executor``, ``strategy``...).
    """
    _reject("runner_class", runner_class, MultistageWalkRunningService)
    _reject("service_group_class", service_group_class, ContinuingWalkServiceGroup)
    _reject("service_handler_class", service_handler_class, bootstrap.ServiceHandler_Local)
    _reject("service_infos", service_infos, None)
    if logger_port is not None:
        logger.debug("run_tests(logger_port=%s): unused, workers return their logs", logger_port)
    if max_thread_count is not None:
        phalanx_options.setdefault("max_workers", max_thread_count)
    results = _run_tests(
        walk_order,
        state=state,
        gather_states=bool(gather_states),
        log_dir=log_dir,
        verbose=int(verbose),
        **phalanx_options,
    )
    logs = _combtest_logs(results.logs)
    states = _per_worker(results, full=gather_states == 2) if gather_states else None
    out = Result(
        results.walk_count,
        results.error_count,
        results.segment_count,
        results.elapsed,
        states,
        logs,
        list(results.failed_tests),
    )
    out.results = results
    return out


def _per_worker(results: Results, full: bool) -> list[list[Any]]:
    failed = set(results.failed_tests)
    cancelled = set(results.cancelled_tests)
    groups: dict[str, list[Any]] = {}
    for walk_id, worker, state in zip(
        results.state_ids, results.state_workers, results.states, strict=True
    ):
        item = state
        if full:
            info = {"walk_id": walk_id, "cancel": walk_id in cancelled or walk_id in failed}
            item = (state, info)
        groups.setdefault(worker, []).append(item)
    return list(groups.values())


def _combtest_logs(run_logs: RunLogs | None) -> CombtestLogs:
    if run_logs is None or not run_logs.trace.exists():
        return CombtestLogs("", {})
    trace = run_logs.trace.with_name(run_logs.trace.name.replace(".trace.jsonl", ".combtest.trace"))
    master = run_logs.trace.with_name(
        run_logs.trace.name.replace(".trace.jsonl", ".combtest.master")
    )
    write_combtest_trace(run_logs.trace, trace)
    remote: dict[str, tuple[str | None, str | None]] = {
        get_my_IP(): (str(run_logs.log), str(trace))
    }
    with master.open("w", encoding="utf-8") as f:
        f.write(encode({"id": "master"}) + "\n")
        for ip, pair in remote.items():
            f.write(encode({"ip": ip, "logs": list(pair)}) + "\n")
    out = CombtestLogs(str(master), remote)
    out.run_logs = run_logs
    return out


def write_combtest_trace(phalanx_trace: Path, out: Path) -> None:
    """Rewrite phalanx's trace as py-combtest's: a line per walk segment with
    ``walk_id``, ``branch_id``, ``walk`` and the ``serial_action`` that opens it."""
    with phalanx_trace.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        src.readline()  # the header
        for line in src:
            obj = json.loads(line)
            if "actions" not in obj or "shrunk_from" in obj:
                continue
            actions = [action_from_json(a) for a in obj["actions"]]
            serial: Action | None = None
            if actions and isinstance(actions[0], SerialAction):
                serial = actions.pop(0)
            record = {
                "walk_id": obj["walk_id"],
                "branch_id": obj.get("branch", []),
                "walk": Walk(actions),
                "serial_action": serial,
            }
            dst.write(encode(record) + "\n")


def replay_walk(
    walk_to_run: Walk, step: bool = False, log_errors: bool = True, state: Any = None
) -> bool:
    """Run ``walk_to_run`` on ``state``; True if it was cancelled.

    Any other exception becomes a WalkFailedError whose message holds the
    traceback, the walk and the state (its ``errno`` copied, if any).
    """
    try:
        _, cancelled = replay(walk_to_run, state, step)
    except Exception as exc:
        try:
            shown = encode(state)
        except TypeError:
            shown = repr(state)
        where = f"Walk was: {walk_to_run!r}\nstate: {shown}"
        if log_errors:
            logger.error("replayed walk failed: %s\n%s", exc, where)
        error = WalkFailedError(f"Walk failed:\n{traceback.format_exc()}\n{where}")
        errno = getattr(exc, "errno", None)
        if errno is not None:
            error.errno = errno
        raise error from exc
    return cancelled
