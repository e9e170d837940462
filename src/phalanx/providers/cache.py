"""The caches of what phalanx builds for hosts (VM images, root disks,
wheelhouses) under ~/.cache/phalanx: each entry a folder named by the hash
of what went into it, so each change of phalanx's own files (an editable
install), of the kernel or of busybox makes a new one, and a developer's
cache would grow by a root disk per edit. So taking an entry marks it used
(its folder's mtime), and removes its siblings that have not been used for
UNUSED_KEPT: a run, a service or a hypervisor takes what it boots each time,
so what is in use stays."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

UNUSED_KEPT = 2 * 24 * 3600.0  # seconds


def taken(entry: Path, kept_for: float = UNUSED_KEPT) -> list[Path]:
    """Mark `entry` used now; remove its siblings unused for `kept_for`
    seconds (a crashed build's `.building-…` folder too). What was removed."""
    now = time.time()
    with contextlib.suppress(OSError):
        os.utime(entry, (now, now))
    try:
        siblings = [other for other in entry.parent.iterdir() if other != entry]
    except OSError:
        return []
    removed = []
    for other in siblings:
        try:
            unused = now - other.stat().st_mtime
        except OSError:
            continue
        if other.is_dir() and not other.is_symlink() and unused > kept_for:
            shutil.rmtree(other, ignore_errors=True)
            removed.append(other)
    return removed
