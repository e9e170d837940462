"""What runs on a worker: one task (a chunk of walks) in, one compact result out.

Tasks and results are JSON text. A task names its action classes by import path
and its walks by id range; the worker rebuilds the walks itself, so no walk,
state object or pickle crosses the wire.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from typing import Any

from phalanx.combinatorial import logs
from phalanx.combinatorial import state as state_codec
from phalanx.combinatorial.action import Action, CancelWalk
from phalanx.combinatorial.names import class_path
from phalanx.combinatorial.plan import Plan, cached_from_wire
from phalanx.combinatorial.serial import apply_update
from phalanx.combinatorial.walk import run_actions

# Failures in one task that carry a full traceback; the rest carry type and message.
TRACEBACK_LIMIT = 5
MESSAGE_LIMIT = 2000
TRACEBACK_CHARS = 8000

_HOST = socket.gethostname()


def origin() -> list[Any]:
    return [_HOST, os.getpid()]


def run_chunk(payload: str) -> str:
    """Run one task. Never raises for a walk's failure: failures are results."""
    task = json.loads(payload)
    # In the coordinating process itself (threads, or an in-process dask cluster)
    # records already reach the run's handlers; capturing them would hide them.
    capture = bool(task.get("capture")) and task.get("origin") != origin()
    logs.set_run(task.get("run"))
    if capture:
        logs.capture_begin(task["log_level"])
    result: dict[str, Any]
    try:
        try:
            plan = cached_from_wire(task["plan"])
        except Exception as exc:
            result = {"fatal": f"{_HOST} pid {os.getpid()}: {type(exc).__name__}: {exc}"}
        else:
            if task["mode"] == "segment":
                result = _run_segment(plan, task)
            else:
                result = _run_walks(plan, task)
    finally:
        if capture:
            records, dropped = logs.capture_end()
            result["logs"] = records
            result["dropped_logs"] = dropped
        logs.set_walk(None)
        logs.set_run(None)
    result["worker"] = f"{_HOST}:{os.getpid()}"
    return json.dumps(result, separators=(",", ":"))


def _type_path(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _failure(walk_id: int, pos: int, exc: BaseException, with_tb: bool) -> list[Any]:
    tb = traceback.format_exc()[-TRACEBACK_CHARS:] if with_tb else None
    return [walk_id, _type_path(exc), pos, str(exc)[:MESSAGE_LIMIT], tb]


def _run_segment(plan: Plan, task: dict[str, Any]) -> dict[str, Any]:
    segment = plan.segments[task["segment"]]
    space = plan.space
    steps = [(p, plan.options[p], space.weights[p], space.sizes[p]) for p in segment.actions]
    if "range" in task:
        lo, hi = task["range"]
        ids: Any = range(lo, hi)
    else:
        ids = task["ids"]
    pidx: list[int] | None = task.get("pidx")
    states: list[Any] | None = task.get("states")
    initial: str = task.get("initial", "null")
    update_enc = task.get("update")
    prune = bool(task.get("prune")) and plan.prunes
    keep_states = bool(task.get("return_states"))

    ran = 0
    cancelled: list[int] = []
    failed: list[list[Any]] = []
    pruned: list[int] = []
    out_states: list[list[Any]] = []
    set_walk = logs.set_walk
    started = time.perf_counter()

    for n, walk_id in enumerate(ids):
        pi = walk_id if pidx is None else pidx[n]
        set_walk(walk_id)
        if prune:
            verdict = _prune(plan, pi)
            if verdict is True:
                pruned.append(walk_id)
                continue
            if verdict is not False:
                pos, exc = verdict
                ran += 1
                failed.append(_failure(walk_id, pos, exc, len(failed) < TRACEBACK_LIMIT))
                continue
        if states is None:
            st = None if initial == "null" else state_codec.fresh(initial)
        else:
            st = state_codec.decode(states[n])
        ran += 1
        pos = -1
        dead = False
        try:
            if update_enc is not None:
                # Decoded per walk: each walk must own the objects the update brings.
                st = apply_update(st, state_codec.decode(update_enc))
            # pos outlives the loop: the except clauses report where the walk failed.
            for pos, opts, weight, size in steps:  # noqa: B007
                action = opts[(pi // weight) % size]
                action.run(action.param, st)
        except CancelWalk:
            cancelled.append(walk_id)
            dead = True
        except Exception as exc:
            failed.append(_failure(walk_id, pos, exc, len(failed) < TRACEBACK_LIMIT))
            dead = True
        if keep_states:
            try:
                out_states.append([walk_id, state_codec.encode(st)])
            except state_codec.StateError as exc:
                out_states.append([walk_id, None])
                if not dead:
                    failed.append([walk_id, _type_path(exc), pos, str(exc), None])
    result: dict[str, Any] = {
        "segments": ran,
        "elapsed": time.perf_counter() - started,
        "cancelled": cancelled,
        "failed": failed,
        "pruned": pruned,
    }
    if keep_states:
        result["states"] = out_states
    return result


def _prune(plan: Plan, pi: int) -> bool | tuple[int, Exception]:
    digits = plan.space.digits(pi)
    walk = plan.walk(digits)
    pos = 0
    try:
        for pos, action in enumerate(walk):
            if action.should_cancel(walk, pos):
                return True
    except Exception as exc:
        return pos, exc
    return False


def _run_walks(plan: Plan, task: dict[str, Any]) -> dict[str, Any]:
    """Explicit walks (shrink candidates): each runs whole, serial actions inline."""
    initial: str = task.get("initial", "null")
    outcomes: list[list[Any]] = []
    for walk in task["walks"]:
        actions: list[Action] = [plan.options[p][o] for p, o in walk]
        at = [0]

        def before(index: int, _action: Action, at: list[int] = at) -> None:
            at[0] = index

        try:
            _, cancelled = run_actions(actions, state_codec.fresh(initial), before)
        except Exception as exc:
            failing = class_path(type(actions[at[0]]))
            outcomes.append(["failed", _type_path(exc), failing, str(exc)[:MESSAGE_LIMIT]])
        else:
            outcomes.append(["cancelled" if cancelled else "passed"])
    return {"outcomes": outcomes}
