"""Operation histories of a tree run: each test's `phalanx-op` and
`phalanx.history.op` records go to a file of its own ($PHALANX_HISTORY),
read back as the test's history when it ends. A tree runs on this machine
alone, without agents, so the records are on the run's own clock already
(no offsets to measure) and no wire is crossed."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from phalanx import layout
from phalanx.history.client import HISTORY_ENV
from phalanx.host import commandfiles
from phalanx.model import CaseHistory, HistoryEvent

log = logging.getLogger("phalanx.tree")

RECORDING = ".recording"  # the run folder's scratch for the records being made
COMMANDS = {"op": "phalanx.host.opclient"}  # what a tree test can record with


class TreeHistories:
    """For the pool engine: each test's environment for recording, and its
    history once it is over."""

    def __init__(self, run_dir: Path, host: str) -> None:
        self.folder = run_dir / RECORDING
        self.host = host
        bin_dir = commandfiles.install(self.folder / "bin", COMMANDS)
        self.bin_dir = str(bin_dir)
        self._prefix = os.path.join(self.folder, "")  # each test's file is named here, as text

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _file(self, index: int) -> str:
        # Text, not a Path: two per test, and most tests record nothing.
        return f"{self._prefix}{index}.jsonl"

    def env(self, index: int, path: str) -> dict[str, str]:
        """What a test's stages record with: $PHALANX_HISTORY, and
        `phalanx-op` first on its PATH (`path`: the PATH it had)."""
        return {HISTORY_ENV: self._file(index), "PATH": f"{self.bin_dir}{os.pathsep}{path}"}

    def take(self, index: int, case: str) -> CaseHistory | None:
        """The test's history (None: it recorded nothing); its file goes."""
        file = self._file(index)
        try:
            with open(file, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        os.unlink(file)
        events = [e for number, line in enumerate(text.splitlines(), 1)
                  if (e := self._event(line, case, number)) is not None]  # fmt: skip
        if not events:
            return None
        return CaseHistory(
            events=tuple(sorted(events, key=lambda e: e.time)),
            file=layout.history_path(case),
        )

    def _event(self, line: str, case: str, number: int) -> HistoryEvent | None:
        """A record as `phalanx-op` writes it, checked as an agent checks
        one; a line that is not one is left out, and said in the log."""
        if not line.strip():
            return None
        from phalanx.wire.messages import MessageErrors, OpRecord, parse_part

        try:
            r = parse_part(OpRecord, line)
        except MessageErrors as exc:
            log.warning("%s: history line %d is not a record, left out: %s", case, number, exc)
            return None
        return HistoryEvent(
            process=r.process, type=r.type, f=r.f, key=r.key, value=r.value, time=r.time,
            host=self.host,
        )  # fmt: skip
