"""Whether a path is a test tree (a folder with a `tests.yaml`), in a module
light enough for `phalanx run` to ask first thing: before it knows, it
starts nothing, and a suite's run starts its agents' fork server as soon as
it does (the tree loader imports YAML and the model)."""

from __future__ import annotations

from pathlib import Path

TESTS_YAML = "tests.yaml"


def tree_folder(path: Path) -> Path | None:
    """The folder holding the top `tests.yaml`: `path` itself, or the `tests/`
    folder of an Asterisk test-suite checkout."""
    for candidate in (path, path / "tests"):
        if (candidate / TESTS_YAML).is_file():
            return candidate
    return None
