"""Python test classes run in a child process (the `python` case kind)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from phalanx.tasks.base import Task

TEST_MODES = ("list", "concurrent")


@dataclass(frozen=True)
class PythonTask(Task):
    type: ClassVar[str] = "python"
    version: ClassVar[int] = 2  # 2: give_results, python

    classes: tuple[str, ...]  # module:ClassName, run in this order
    config: dict[str, Any] = field(default_factory=dict)  # each class's constructor argument
    modules: dict[str, str] = field(default_factory=dict)  # module name -> source, shipped
    # list: one class after the other; concurrent: all at once.
    test_mode: Literal["list", "concurrent"] = "list"
    test_start_delay: float = 0.0  # seconds before each class starts
    # False: this host's final_results are not kept (CloudPunch's servers
    # with servers_give_results off); failures still count.
    give_results: bool = True
    python: str = ""  # the interpreter the child runs under; "" is the agent's own


def result_keys(specs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """What each class's final_results is keyed by: its module's last name
    (`ping`), as CloudPunch keys them; `module:Class` for classes whose
    module holds another class of the same case (the name alone would clash)."""
    short = {spec: spec.partition(":")[0].rpartition(".")[2] for spec in specs}
    counts: dict[str, int] = {}
    for name in short.values():
        counts[name] = counts.get(name, 0) + 1
    return {spec: name if counts[name] == 1 else spec for spec, name in short.items()}
