"""A stage script run by the host's shell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phalanx.tasks.base import Task

DEFAULT_SHELL = ("bash", "-e")  # phalanx's own suites


@dataclass(frozen=True)
class ShellTask(Task):
    type: ClassVar[str] = "shell"
    version: ClassVar[int] = 2  # 2: `shell`

    script: str  # @tags@ already substituted
    origin: str = "stage"  # where the script came from, for messages and $0
    # What runs a script without a shebang; its `-e` also goes to a shebang
    # that names a shell. XrdTest suites use `/bin/sh` (no -e), as its slave did.
    shell: tuple[str, ...] = DEFAULT_SHELL
