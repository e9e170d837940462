"""Build small test trees on disk and run `phalanx run` on them as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).parents[2] / "examples" / "tree" / "tests"


def make_test(tree: Path, name: str, config: str, run_test: str | None = None) -> Path:
    folder = tree / name
    folder.mkdir(parents=True)
    (folder / "test-config.yaml").write_text(config)
    if run_test is not None:
        (folder / "run-test").write_text(run_test)
        (folder / "run-test").chmod(0o755)
    return folder


def make_tree(root: Path, tests: dict[str, tuple[str, str | None]]) -> Path:
    """A `tests/` folder under `root` with one test per entry (name: (config, run-test))."""
    tree = root / "tests"
    tree.mkdir(parents=True)
    listing = ["tests:"] + [f"    - test: '{name}'" for name in tests]
    (tree / "tests.yaml").write_text("\n".join(listing) + "\n")
    for name, (config, run_test) in tests.items():
        make_test(tree, name, config, run_test)
    return tree


def phalanx(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def results(cwd: Path) -> dict[str, Any]:
    (folder,) = (cwd / "phalanx-results").iterdir()
    data: dict[str, Any] = json.loads((folder / "results.json").read_text())
    return data


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in data["cases"]}


def reasons(data: dict[str, Any]) -> dict[str, str | None]:
    return {c["name"]: c["reason"] for c in data["cases"]}
