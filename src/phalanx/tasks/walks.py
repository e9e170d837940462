"""Combinatorial walks run on one host (the `walks` case kind), and the
vocabulary of their options: the strategies and executor spellings that
`phalanx.combinatorial` understands, kept here, light, so that checking a
suite does not import the walk machinery."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from phalanx.tasks.base import Task

STRATEGIES = ("product", "pairwise", "random")
EXECUTORS = "local, threads, dask-local, dask://HOST:PORT, dask-ssh://H1,H2,..."


@dataclass(frozen=True)
class WalksTask(Task):
    type: ClassVar[str] = "walks"
    version: ClassVar[int] = 1

    case: str  # names the folder the trace and log go to
    module: str  # the actions module
    order: tuple[str, ...]  # classes of `module`, or `other.module:Class`
    modules: dict[str, str] = field(default_factory=dict)  # module name -> source, shipped
    strategy: str = "product"  # product | pairwise | random | random:N
    executor: str | None = None  # None: phalanx.toml's, or local
    state: Any = None  # the initial state (JSON)
    seed: int | None = None
    max_workers: int | None = None
    shrink: bool = False
    verbose: int = 1


def strategy_problem(strategy: str) -> str | None:
    """Why a walks case cannot run `strategy`, or None. Its random strategy
    needs the count in the name (`random:N`): a case has no other place for it."""
    name, sep, count = strategy.partition(":")
    given = bool(sep) and count.strip().isdigit()
    if name not in STRATEGIES or bool(sep) != (name == "random") or (sep and not given):
        return f"strategy {strategy!r}: expected product, pairwise or random:N"
    return None


def executor_problem(spec: str) -> str | None:
    """Why `spec` names no executor combinatorial can make, or None."""
    if spec in ("local", "threads", "dask-local"):
        return None
    for prefix in ("dask://", "tcp://", "tls://"):
        if spec.startswith(prefix):
            return None if spec.removeprefix(prefix) else f"{spec!r} names no scheduler"
    if spec.startswith("dask-ssh://"):
        hosts = [h.strip() for h in spec.removeprefix("dask-ssh://").split(",") if h.strip()]
        return None if hosts else f"{spec!r} names no hosts"
    return f"unknown executor {spec!r} (expected {EXECUTORS})"
