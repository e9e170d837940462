"""A VM test module run on a host (the `vm` case kind)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from phalanx.tasks.base import Task


@dataclass(frozen=True)
class VmTask(Task):
    type: ClassVar[str] = "vm"
    version: ClassVar[int] = 1

    case: str  # the case's name: its VMs' folder (vm/<case>/) in the host's working directory
    module: str  # the module's name (`boot` for boot.py)
    source: str  # its source, shipped
    file: str  # the file the case named, for reports
    classes: tuple[str, ...] = ()  # VirtTest classes to run; (): every one the module defines
    tests: tuple[str, ...] = ()  # their methods to run; (): every test_* (or action)
    params: dict[str, Any] = field(default_factory=dict)  # self.params
    accel: str = ""  # kvm or tcg; "": KVM where it works
    ram_mb: int = 256
