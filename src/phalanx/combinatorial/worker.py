"""What runs on a worker: one chunk of walks in, one compact result out.

Chunks and results are JSON text (`protocol`). A chunk names its action
classes by import path and its walks by id range; the worker rebuilds the
walks itself, so no walk, state object or pickle crosses the wire.
"""

from __future__ import annotations

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
from phalanx.combinatorial.protocol import (
    ChunkResult,
    SegmentChunk,
    SegmentResult,
    WalkFailure,
    WalkOutcome,
    WalksChunk,
    WorkerRecord,
    decode_chunk,
    encode,
)
from phalanx.combinatorial.results import place_of
from phalanx.combinatorial.serial import apply_update
from phalanx.combinatorial.walk import run_actions

# Failures in one task that carry a full traceback; the rest carry type and message.
TRACEBACK_LIMIT = 5
MESSAGE_LIMIT = 2000
TRACEBACK_CHARS = 8000

_HOST = socket.gethostname()


def origin() -> tuple[str, int]:
    return (_HOST, os.getpid())


def _worker() -> str:
    return f"{_HOST}:{os.getpid()}"


def run_chunk(payload: str) -> str:
    """Run one chunk. Never raises for a walk's failure: failures are results."""
    try:
        chunk = decode_chunk(payload)
    except Exception as exc:  # a coordinator of another phalanx version
        unread = f"{_HOST} pid {os.getpid()} cannot read the chunk: {type(exc).__name__}: {exc}"
        return encode(ChunkResult(worker=_worker(), fatal=unread))
    header = chunk.header
    # In the coordinating process itself (threads, or an in-process dask cluster)
    # records already reach the run's handlers; capturing them would hide them.
    capture = header.capture and header.origin != origin()
    logs.set_run(header.run)
    if capture:
        logs.capture_begin(header.log_level)
    segment: SegmentResult | None = None
    outcomes: list[WalkOutcome] | None = None
    fatal: str | None = None
    try:
        try:
            plan = cached_from_wire(header.plan)
        except Exception as exc:
            fatal = f"{_HOST} pid {os.getpid()}: {type(exc).__name__}: {exc}"
        else:
            if isinstance(chunk, SegmentChunk):
                segment = _run_segment(plan, chunk)
            else:
                outcomes = _run_walks(plan, chunk)
    finally:
        records: list[WorkerRecord] | None = None
        dropped = 0
        if capture:
            records, dropped = logs.capture_end()
        logs.set_walk(None)
        logs.set_run(None)
    result = ChunkResult(_worker(), segment, outcomes, fatal, records, dropped)
    return encode(result)


def _type_path(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _failure(walk_id: int, pos: int, exc: BaseException, with_tb: bool) -> WalkFailure:
    tb = traceback.format_exc()[-TRACEBACK_CHARS:] if with_tb else None
    return WalkFailure(walk_id, _type_path(exc), pos, str(exc)[:MESSAGE_LIMIT], tb, place_of(exc))


def _run_segment(plan: Plan, chunk: SegmentChunk) -> SegmentResult:
    segment = plan.segments[chunk.segment]
    space = plan.space
    steps = [(p, plan.options[p], space.weights[p], space.sizes[p]) for p in segment.actions]
    ids: range | list[int] = range(*chunk.span) if chunk.span is not None else chunk.ids or []
    pidx = chunk.pidx
    states = chunk.states
    initial = chunk.initial
    update_enc = chunk.update
    prune = chunk.prune and plan.prunes
    keep_states = chunk.return_states

    ran = 0
    cancelled: list[int] = []
    failed: list[WalkFailure] = []
    pruned: list[int] = []
    state_ids: list[int] = []
    out_states: list[Any] = []
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
            state_ids.append(walk_id)
            try:
                out_states.append(state_codec.encode(st))
            except state_codec.StateError as exc:
                out_states.append(None)
                if not dead:
                    failed.append(WalkFailure(walk_id, _type_path(exc), pos, str(exc)))
    return SegmentResult(
        segments=ran,
        elapsed=time.perf_counter() - started,
        cancelled=cancelled,
        failed=failed,
        pruned=pruned,
        state_ids=state_ids if keep_states else None,
        states=out_states if keep_states else None,
    )


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


def _run_walks(plan: Plan, chunk: WalksChunk) -> list[WalkOutcome]:
    """Explicit walks (shrink candidates): each runs whole, serial actions inline."""
    initial = chunk.initial
    outcomes: list[WalkOutcome] = []
    for walk in chunk.walks:
        actions: list[Action] = [plan.options[p][o] for p, o in walk]
        at = [0]

        def before(index: int, _action: Action, at: list[int] = at) -> None:
            at[0] = index

        try:
            _, cancelled = run_actions(actions, state_codec.fresh(initial), before)
        except Exception as exc:
            failing = class_path(type(actions[at[0]]))
            message = str(exc)[:MESSAGE_LIMIT]
            outcomes.append(WalkOutcome("failed", _type_path(exc), failing, message, place_of(exc)))
        else:
            outcomes.append(WalkOutcome("cancelled" if cancelled else "passed"))
    return outcomes
