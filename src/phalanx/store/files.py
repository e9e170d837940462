"""The run folder on disk: stage output per host (the bytes the program
wrote, undecoded), collected logs and each case's operation history
(history.jsonl, history.edn). The run's record is results.json,
written at its end; the service keeps it in its store as it goes."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from phalanx import layout
from phalanx.events import CaseEnded, Event, HostLogs, HostOutput, HostStageEnded, RunEnded


class RunFolder:
    """A sink: writes what events carry into `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._outputs: dict[tuple[str | None, str, str], IO[bytes]] = {}

    def __call__(self, event: Event) -> None:
        match event:
            case HostOutput(case=case, stage=stage, host=host, data=data):
                # Opened on first output: a stage that prints nothing costs no
                # file, which matters at one barrier every few milliseconds.
                f = self._outputs.get((case, stage, host))
                if f is None:
                    target = self.path / layout.output_path(case, stage, host)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    f = self._outputs[(case, stage, host)] = target.open("wb")
                # A piece is at most one wire message (256 KiB): one write,
                # into the page cache, well under a millisecond. Flushed, so
                # the web UI's live tail reads what a stage printed so far.
                f.write(data)
                f.flush()
            case HostStageEnded(case=case, stage=stage, result=result):
                if (f := self._outputs.pop((case, stage, result.host), None)) is not None:
                    f.close()
            case HostLogs(files=files):
                for relative, content in files:
                    target = self.path / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(content)
            case CaseEnded(result=case) if case.history is not None and case.history.file:
                from phalanx.history import export  # only runs that recorded histories

                target = self.path / case.history.file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(export.jsonl(case.history), encoding="utf-8")
                target.with_suffix(".edn").write_text(export.edn(case.history), encoding="utf-8")
            case RunEnded():
                self.close()

    def close(self) -> None:
        for f in self._outputs.values():
            f.close()
        self._outputs.clear()
