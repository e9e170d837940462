"""Combinatorial walks: list actions and their options; phalanx runs every combination.

Porting from py-combtest is a change of imports::

    from phalanx.combinatorial import Action, SerialAction, OptionSet, CancelWalk, run_tests

See docs/combinatorial.md.
"""

from phalanx.combinatorial.action import Action, CancelWalk, OptionSet, SerialAction, SyncPoint
from phalanx.combinatorial.executors import (
    DaskExecutor,
    Executor,
    ExecutorError,
    LocalExecutor,
    ThreadExecutor,
    make_executor,
)
from phalanx.combinatorial.logs import logger
from phalanx.combinatorial.plan import PlanError
from phalanx.combinatorial.replay import load_walk, replay_walk, replay_walk_by_id
from phalanx.combinatorial.results import Failure, Results, RunLogs, Shrunk
from phalanx.combinatorial.run import run_tests
from phalanx.combinatorial.serial import SerialUpdateError
from phalanx.combinatorial.state import StateError
from phalanx.combinatorial.walk import Walk

__all__ = [
    "Action",
    "CancelWalk",
    "DaskExecutor",
    "Executor",
    "ExecutorError",
    "Failure",
    "LocalExecutor",
    "OptionSet",
    "PlanError",
    "Results",
    "RunLogs",
    "SerialAction",
    "SerialUpdateError",
    "Shrunk",
    "StateError",
    "SyncPoint",
    "ThreadExecutor",
    "Walk",
    "load_walk",
    "logger",
    "make_executor",
    "replay_walk",
    "replay_walk_by_id",
    "run_tests",
]
