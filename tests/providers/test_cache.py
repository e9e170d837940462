"""The build caches keep what is used and drop what has not been for days,
so an image per edit of phalanx does not pile up."""

from __future__ import annotations

import os
import time
from pathlib import Path

from phalanx.providers.cache import UNUSED_KEPT, taken
from phalanx.providers.wheelhouse import Target, key_for, wheelhouse


def _entry(root: Path, name: str, unused_for: float) -> Path:
    entry = root / name
    entry.mkdir(parents=True)
    (entry / "image.json").write_text("{}")
    when = time.time() - unused_for
    os.utime(entry, (when, when))
    return entry


def test_taking_an_entry_marks_it_used_and_drops_siblings_unused_for_days(
    tmp_path: Path,
) -> None:
    current = _entry(tmp_path, "root-current", UNUSED_KEPT * 3)  # old, but taken now
    recent = _entry(tmp_path, "aaaa", 3600)  # another phalanx's, used an hour ago
    stale = _entry(tmp_path, "bbbb", UNUSED_KEPT + 60)
    crashed = _entry(tmp_path, ".building-x", UNUSED_KEPT + 60)  # a build a crash left
    probe = tmp_path / "kvm-probe.json"  # not an entry: files stay
    probe.write_text("{}")
    os.utime(probe, (0, 0))

    assert sorted(taken(current)) == sorted([stale, crashed])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aaaa", "kvm-probe.json", "root-current"]
    assert time.time() - current.stat().st_mtime < 60
    assert recent.exists()


def test_a_wheelhouse_taken_from_the_cache_drops_an_old_one(tmp_path: Path) -> None:
    target = Target((3, 11), "x86_64")
    kept = tmp_path / key_for(target)
    kept.mkdir()  # as if built before: taken from the cache, not built
    old = _entry(tmp_path, "0.0.1-oldkey", UNUSED_KEPT + 60)
    assert wheelhouse(target, tmp_path).path == kept
    assert not old.exists() and kept.exists()
