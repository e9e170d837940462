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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

UNUSED_KEPT = 2 * 24 * 3600.0  # seconds


def build(final: Path, fill: Callable[[Path], None], prefix: str = ".building-") -> Path:
    """Make the cache entry `final` by `fill`ing a new folder beside it and
    renaming it into place, so a reader never sees half an entry and two
    builders racing end with one (the other's is dropped); then `taken`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    try:
        fill(building)
        try:
            building.rename(final)
        except OSError:
            if not final.is_dir():  # not another build that finished first
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    taken(final)
    return final


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
