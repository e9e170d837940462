"""What a host is asked to run for one stage, and how that ended.

Both cross between the coordinator and a host: a `Task` goes out (inside a
`stage.start`, or straight to an in-process session), an `Outcome` comes
back. The case kind makes the task and judges the outcome; the host's runner
turns one into the other. One dataclass per task type, shared by the kind
that builds it and the runner that runs it: its defaults are the only ones.
"""

from __future__ import annotations

from phalanx.tasks.base import Outcome, Task, ended_by, from_json, to_json
from phalanx.tasks.executable import ExecutableTask
from phalanx.tasks.python import PythonTask
from phalanx.tasks.shell import ShellTask
from phalanx.tasks.vm import VmTask
from phalanx.tasks.walks import WalksTask

__all__ = [
    "ExecutableTask",
    "Outcome",
    "PythonTask",
    "ShellTask",
    "Task",
    "VmTask",
    "WalksTask",
    "ended_by",
    "from_json",
    "to_json",
]
