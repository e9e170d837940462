"""What the container tests share: why they cannot run here, and the
Debian images they run on, built once from Debian's mirror (cached by
content in the engine: a second session finds them there)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from phalanx.providers import bridge
from phalanx.providers.containerimage import build
from phalanx.providers.containers import EngineError, engine
from phalanx.providers.netns import missing_privileges

# The storage role's image has netcat beside the base: two roles, two package sets.
STORAGE_PACKAGES = ("netcat-openbsd",)


def _why_not() -> str | None:
    problem = missing_privileges()
    if problem is not None:
        return problem
    if bridge.tools_missing():
        return f"missing {', '.join(bridge.tools_missing())}"
    if shutil.which("podman") is None:
        return "no podman (apt-get install podman runc)"
    if shutil.which("mmdebstrap") is None:
        return "no mmdebstrap to build the test image (apt-get install mmdebstrap)"
    try:
        kind = engine()
    except EngineError as exc:
        return str(exc)
    done = subprocess.run(
        [kind.path, "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        return f"podman does not work here: {done.stderr.strip()}"
    return None


F = TypeVar("F", bound=Callable[..., Any])

WHY_NOT = _why_not()
if WHY_NOT is not None:
    print(f"container tests skipped: {WHY_NOT}", file=sys.stderr)
# A test may be the first to need an image: its build (mmdebstrap from
# Debian's mirror, minutes on a busy machine) is within the test's bound.
IMAGE_BUILD_BOUND = 900


def needs_podman(test: F) -> F:
    """Skipped, saying why, where container hosts cannot run; bounded
    with room for building the image it may be the first to need."""
    skipped = pytest.mark.skipif(WHY_NOT is not None, reason=f"container hosts: {WHY_NOT}")
    bounded: F = pytest.mark.timeout(IMAGE_BUILD_BOUND)(skipped(test))
    return bounded


_built: dict[tuple[str, ...], str] = {}


def image(packages: tuple[str, ...] = ()) -> str:
    """The Debian image with `packages`, built on first use."""
    if packages not in _built:
        _built[packages] = asyncio.run(build(engine(), packages)).tag
    return _built[packages]
