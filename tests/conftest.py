"""Fixtures shared across the test packages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from phalanx.providers.vmimage import Image, RootDisk, build_image, build_root_disk


@pytest.fixture(scope="session")
def vm_images() -> tuple[Image, RootDisk]:
    """The tiny image and the root disk, built (or found in this user's
    content-hashed cache, so reusing an earlier session's is safe) once per
    session, before any test's timeout runs."""
    return build_image(), build_root_disk()


# --- nothing in the checkout -----------------------------------------------------------
#
# Tests write only under their tmp paths. Hypothesis keeps the examples it
# found (and a cache of constants) in `.hypothesis/` of the working folder
# unless told otherwise: here, a folder of this user's cache (kept between
# sessions, so a failing example is tried first next time).

CHECKOUT = Path(__file__).parents[1]
_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "phalanx-tests"
set_hypothesis_home_dir(str(_CACHE / "hypothesis"))

# What tools keep in the checkout (ignored by git); anything else a test left is a fault.
_TOOLS = {".git", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache", "__pycache__"}
_WATCHED = ("phalanx-results", "phalanx-data")


def _checkout_entries() -> set[str]:
    found = {p.name for p in CHECKOUT.iterdir() if p.name not in _TOOLS}
    for name in _WATCHED:
        if (CHECKOUT / name).is_dir():
            found |= {f"{name}/{p.name}" for p in (CHECKOUT / name).iterdir()}
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = _checkout_entries()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when a test left something in the checkout (checked
    once, by the process that holds the session: with -n, the controller)."""
    if hasattr(session.config, "workerinput") or _BEFORE not in session.config.stash:
        return
    before: set[str] = session.config.stash[_BEFORE]
    left = sorted(n for n in _checkout_entries() - before if not n.endswith(".egg-info"))
    if left:
        print(f"\ntests wrote into the checkout {CHECKOUT}: {', '.join(left)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[set[str]]()
