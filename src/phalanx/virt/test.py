"""`VirtTest`, the base of a VM test, as avocado-virt's `test.VirtTest`:
`from avocado_virt import test` becomes `from phalanx.virt import test`.

Each test method runs on an object of its own with a VM of its own, not
powered on: `setUp()`, the method, `tearDown()`, then `cleanup()` (the old
avocado name of the last step; both run even when an earlier step failed).
Whatever VM a test leaves running, phalanx kills after it.
"""

from __future__ import annotations

import logging
import unittest
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phalanx.virt import exceptions

if TYPE_CHECKING:
    from phalanx.virt.vm import VM


class Params(Mapping[str, Any]):
    """The case's `params:` as avocado's `self.params` gives them."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def get(self, key: str, path: str | None = None, default: Any = None) -> Any:  # type: ignore[override]
        """The value of `key` (avocado's `path` is accepted, and ignored:
        phalanx's params are one flat mapping)."""
        return self._values.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({self._values!r})"


class VirtTest(unittest.TestCase):
    """A test that drives one VM (`self.vm`)."""

    vm: VM

    def __init__(
        self,
        methodName: str = "runTest",
        *,
        vm: VM,
        params: Mapping[str, Any] | None = None,
        log: logging.Logger | None = None,
        outputdir: Path | None = None,
    ) -> None:
        super().__init__(methodName)
        self.vm = vm
        self.params = Params(params or {})
        self.name = f"{type(self).__name__}.{methodName}"
        self.log = log or logging.getLogger(f"phalanx.virt.{self.name}")
        self.outputdir = str(outputdir) if outputdir is not None else ""
        self.logdir = self.outputdir
        self.whiteboard = ""

    def setUp(self) -> None:
        """Before the test method; the VM is not powered on yet."""

    def tearDown(self) -> None:
        """After the test method, whatever it did."""

    def cleanup(self) -> None:
        """After tearDown (the older name of that step)."""

    def error(self, message: str) -> None:
        raise exceptions.TestError(message)

    def cancel(self, message: str) -> None:
        raise exceptions.TestCancel(message)

    def fail(self, msg: Any = None) -> Any:
        raise exceptions.TestFail(msg)

    failureException = exceptions.TestFail
