"""VM tests in avocado-virt's style: a `VirtTest` drives `self.vm` (power
on, log in over SSH, run commands, migrate, QMP, power off). A test written
for avocado-virt runs after `from avocado_virt import test` becomes
`from phalanx.virt import test` (and `from avocado.core import exceptions`
becomes `from phalanx.virt import exceptions`)."""

from __future__ import annotations

from phalanx.virt import exceptions, test
from phalanx.virt.test import VirtTest

__all__ = ["VirtTest", "exceptions", "test"]
