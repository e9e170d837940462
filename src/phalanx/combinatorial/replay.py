"""Run one walk again, alone, in this process."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phalanx.combinatorial.action import Action
from phalanx.combinatorial.logs import logger
from phalanx.combinatorial.results import RunLogs
from phalanx.combinatorial.trace import read_entry
from phalanx.combinatorial.walk import Walk, run_actions


class ReplayStopped(Exception):
    """The user stopped a step-by-step replay."""


def _step(index: int, action: Action, total: int) -> None:
    answer = input(f"step {index + 1}/{total}: {action!r} -- Enter runs it, q stops: ")
    if answer.strip().lower() in {"q", "quit"}:
        raise ReplayStopped(f"stopped before step {index + 1}")


def replay(walk: Walk, state: Any = None, step: bool = False) -> tuple[Any, bool]:
    """(final state, cancelled). A failing action's exception propagates as it was raised."""
    total = len(walk)

    def before(index: int, action: Action) -> None:
        logger.debug("replay step %d/%d: %r", index + 1, total, action)
        if step:
            _step(index, action, total)

    return run_actions(walk, state, before)


def replay_walk(walk: Walk, state: Any = None, step: bool = False) -> Any:
    """Run ``walk`` on ``state`` (mutated in place where it can be) and return the final state.

    With ``step``, wait for Enter before each action.
    """
    final, cancelled = replay(walk, state, step)
    if cancelled:
        logger.info("replayed walk was cancelled (an action raised CancelWalk)")
    return final


def trace_path(trace_or_results_logs: str | Path | RunLogs | Mapping[str, Any]) -> Path:
    if isinstance(trace_or_results_logs, RunLogs):
        return trace_or_results_logs.trace
    if isinstance(trace_or_results_logs, Mapping):
        return Path(trace_or_results_logs["trace"])
    return Path(trace_or_results_logs)


def load_walk(
    trace_or_results_logs: str | Path | RunLogs | Mapping[str, Any], walk_id: int
) -> Walk:
    """Walk ``walk_id`` (and only it) from a trace."""
    return read_entry(trace_path(trace_or_results_logs), walk_id).walk()


def replay_walk_by_id(
    trace_or_results_logs: str | Path | RunLogs | Mapping[str, Any],
    walk_id: int,
    state: Any = None,
    step: bool = False,
) -> Any:
    """Replay exactly walk ``walk_id`` of a trace (a path, or ``Results.logs``)."""
    return replay_walk(load_walk(trace_or_results_logs, walk_id), state=state, step=step)
