"""The task types by the name they cross the wire under (`Task.type`):
phalanx's own and those of installed plug-ins (entry-point group
`phalanx.tasks`, each naming a frozen dataclass subclass of `Task`). A
kind makes them; the agent checks a task it is sent against the type it
finds here, and runs it with the runner of the same name
(`phalanx.host.runners`)."""

from __future__ import annotations

import dataclasses

from phalanx.plugins import Catalog, Registry
from phalanx.tasks.base import Task


def _accept(name: str, thing: object) -> type[Task]:
    if not (isinstance(thing, type) and issubclass(thing, Task)):
        raise TypeError("it is not a subclass of phalanx.tasks.Task")
    if not dataclasses.is_dataclass(thing):
        raise TypeError("it is not a dataclass")
    called = getattr(thing, "type", None)
    if called != name:
        raise TypeError(f"its type is {called!r}, not {name!r}")
    if not isinstance(getattr(thing, "version", None), int):
        raise TypeError("it has no integer `version`")
    return thing


TASKS: Registry[type[Task]] = Registry(
    Catalog(
        "phalanx.tasks",
        "task type",
        {
            "shell": "phalanx.tasks.shell:ShellTask",
            "python": "phalanx.tasks.python:PythonTask",
            "walks": "phalanx.tasks.walks:WalksTask",
            "executable": "phalanx.tasks.executable:ExecutableTask",
            "vm": "phalanx.tasks.vm:VmTask",
        },
    ),
    _accept,
)
