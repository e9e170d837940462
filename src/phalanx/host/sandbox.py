"""Sandbox folders for tree tests: one per test, named for it, kept when the
test leaves files in it, gone when it leaves none.

A test that leaves its folder empty hands it on to the next test, renamed:
on ext4 a mkdir costs ~150 us of CPU (as much as a trivial test) and a
rename ~10 us, and most tests write nothing. What is left spare at the end
is removed.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path


def sandbox_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+#-]", "_", name) or "_"


class Sandboxes:
    """The sandboxes below `root`. Not thread-safe: one event loop uses it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._spare: list[str] = []

    def take(self, test: str) -> str:
        """An empty folder named for `test`, made or handed on."""
        path = os.path.join(self.root, sandbox_name(test))
        while self._spare:
            try:
                os.rename(self._spare[-1], path)
            except FileNotFoundError:  # the spare is gone
                self._spare.pop()
                continue
            except OSError:  # `path` exists and holds files (the same test run twice)
                break
            self._spare.pop()
            return path
        os.makedirs(path, exist_ok=True)
        return path

    def give_back(self, path: str) -> None:
        """The test is over: an empty folder becomes a spare."""
        try:
            with os.scandir(path) as entries:
                if next(entries, None) is not None:
                    return  # the test left files to look at
        except OSError:
            return
        self._spare.append(path)

    def close(self) -> None:
        """Remove the spares (and the root, if nothing is kept in it)."""
        for path in self._spare:
            with contextlib.suppress(OSError):
                os.rmdir(path)
        self._spare.clear()
        with contextlib.suppress(OSError):
            os.rmdir(self.root)
