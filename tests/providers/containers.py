"""What the container tests share: why they cannot run here, the Debian
images they run on, built once from Debian's mirror (cached by content in
the engine: a second session finds them there), and Docker's CLI speaking
the Docker Engine API to a podman service of the test's own (no Docker
engine runs here: podman serves the same API)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from phalanx.providers import bridge
from phalanx.providers.containerimage import build
from phalanx.providers.containers import ENGINE_ENV, EngineError, engine
from phalanx.providers.netns import missing_privileges
from tests.eventually import eventually

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


def _engine_api_answers(env: dict[str, str]) -> bool:
    done = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    return done.returncode == 0 and bool(done.stdout.strip())


@contextlib.contextmanager
def docker_on_podman(folder: Path) -> Iterator[dict[str, str]]:
    """The environment under which phalanx speaks to its engine with
    Docker's CLI (PHALANX_CONTAINER_ENGINE=docker), the CLI speaking the
    Docker Engine API to `podman system service` on a socket in `folder`:
    the same images and containers as podman's. The service ends with its
    process group."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI (Debian's docker.io has it; no Docker daemon is needed)")
    socket = folder / "engine.sock"
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []  # as phalanx gives podman
    podman = shutil.which("podman") or "podman"
    with (folder / "engine.log").open("wb") as log:
        service = subprocess.Popen(
            [podman, *runtime, "system", "service", "--time=0", f"unix://{socket}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    env = {ENGINE_ENV: "docker", "DOCKER_HOST": f"unix://{socket}"}
    try:
        eventually(lambda: _engine_api_answers(env), within=60, what="podman's Docker API")
        yield env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, signal.SIGKILL)
            service.wait(timeout=30)
