"""One tree test: a `run-test` program, or a declarative `test-config.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phalanx.tasks.base import Task


@dataclass(frozen=True)
class ExecutableTask(Task):
    type: ClassVar[str] = "executable"
    version: ClassVar[int] = 1

    name: str  # the test's name in its tree: its sandbox's name
    dir: str  # the test's folder
    cwd: str | None = None  # where it runs; None: its folder
    skip: str | None = None  # why it is skipped, when it is
    dependencies: tuple[tuple[str, str], ...] = ()  # (kind, name) the host must have
    inactivity: float | None = None  # seconds of silence after which it is stopped
    declarative: bool = False  # run by phalanx's test object instead of run-test
    env: tuple[tuple[str, str], ...] = ()  # set for the test (runtests.py's TESTSUITE_*…)
    checks: tuple[tuple[str, str], ...] = ()  # settings of the dependency checks
