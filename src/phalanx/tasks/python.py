"""Python test classes run in a child process (the `python` case kind)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from phalanx.tasks.base import Task

TEST_MODES = ("list", "concurrent")


@dataclass(frozen=True)
class PythonTask(Task):
    type: ClassVar[str] = "python"
    version: ClassVar[int] = 1

    classes: tuple[str, ...]  # module:ClassName, run in this order
    config: dict[str, Any] = field(default_factory=dict)  # each class's constructor argument
    modules: dict[str, str] = field(default_factory=dict)  # module name -> source, shipped
    # list: one class after the other; concurrent: all at once.
    test_mode: Literal["list", "concurrent"] = "list"
    test_start_delay: float = 0.0  # seconds before each class starts
