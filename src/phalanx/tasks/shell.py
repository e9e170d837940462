"""A stage script run by the host's shell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phalanx.tasks.base import Task


@dataclass(frozen=True)
class ShellTask(Task):
    type: ClassVar[str] = "shell"
    version: ClassVar[int] = 1

    script: str  # @tags@ already substituted
    origin: str = "stage"  # where the script came from, for messages and $0
