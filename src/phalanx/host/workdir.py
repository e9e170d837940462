"""What marks an agent's own on its host, known to whoever cleans up after
it (its provider, `phalanx cleanup`) without importing the agent: the
variable every stage process carries, and the folder of its local socket."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

WORKDIR_MARK = "PHALANX_WORKDIR"  # in every stage process's environment: whose it is


def socket_dir(workdir: Path) -> Path:
    """Where the agent's local socket lives. Unix socket paths are limited to
    about 100 bytes, too short for most working directories, so it is a short
    folder in the temp dir, named after the workdir so that whoever cleans up
    after a killed agent can find it."""
    digest = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"phx-{digest}"
