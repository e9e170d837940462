"""What a log file gained during a stage: sizes are noted when the stage
starts and the bytes past them are collected after it ends."""

from __future__ import annotations

import base64
import glob
from pathlib import Path

from phalanx.host import beside
from phalanx.wire.messages import LogFile

MAX_LOG_BYTES = 16 * 1024 * 1024  # per file per stage; the rest is cut, and said so


class LogWatch:
    def __init__(self, patterns: list[str], cwd: Path) -> None:
        self.patterns = patterns
        self.cwd = cwd
        self.offsets = {path: _size(path) for _, path in self._paths()}

    def _paths(self) -> list[tuple[str, Path]]:
        """(the name the suite gave, the file) for every file the patterns match;
        relative patterns are relative to the host's working directory."""
        found: list[tuple[str, Path]] = []
        for pattern in self.patterns:
            if Path(pattern).is_absolute():
                # A container host's files, when the agent is beside one.
                seen = beside.path(pattern)
                prefix = len(seen) - len(pattern)
                matches = [m[prefix:] for m in sorted(glob.glob(seen))]
            else:
                matches = sorted(glob.glob(pattern, root_dir=self.cwd))
            for name in matches or [pattern]:
                where = beside.path(name) if Path(name).is_absolute() else self.cwd / name
                found.append((name, Path(where)))
        return found

    def collect(self) -> list[LogFile]:
        files: list[LogFile] = []
        for name, path in self._paths():
            if not path.is_file():
                files.append(LogFile(path=name, missing=True))
                continue
            start = self.offsets.get(path, 0)
            size = _size(path)
            if size < start:  # truncated or rotated during the stage: take it all
                start = 0
            with path.open("rb") as f:
                f.seek(start)
                data = f.read(MAX_LOG_BYTES + 1)
            files.append(
                LogFile(
                    path=name,
                    content_b64=base64.b64encode(data[:MAX_LOG_BYTES]).decode(),
                    truncated=len(data) > MAX_LOG_BYTES,
                )
            )
        return files


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
