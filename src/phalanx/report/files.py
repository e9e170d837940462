"""Writing report files so that a reader never sees half of one."""

from __future__ import annotations

import os
from pathlib import Path

# The mode a new report file asks for; the umask takes its share, as for any
# file the user's programs make (mkstemp's 0600 would lock out a CI step
# that reads the reports as another user).
MODE = 0o666


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file next to `path`, then rename it over
    `path`: a crash or a concurrent reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # os.urandom as secrets.token_hex uses it, without secrets' imports
    # (hmac, hashlib, random) in every run that writes a report.
    tmp = path.parent / f".{path.name}.{os.urandom(8).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
