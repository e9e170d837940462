"""The in-stage commands (`phalanx-op`, `phalanx-sync`…) as small files on a
stage's PATH, each running its module with this Python: written by an agent
for its stages and by a tree run for its tests."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path


def install(bin_dir: Path, commands: Mapping[str, str], python: str = sys.executable) -> Path:
    """`bin_dir/phalanx-NAME` for each NAME → module, run by `python`;
    returns `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for command, module in commands.items():
        path = bin_dir / f"phalanx-{command}"
        path.write_text(f"#!{python}\nfrom {module} import entry\nentry()\n")
        path.chmod(0o755)
    return bin_dir
