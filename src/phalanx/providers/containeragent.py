"""The agent inside any image with CPython >= 3.11, without rebuilding it.

An image is asked once (a throwaway container without a network) which
Python it has, on which machine, with which C library. The agent's wheels
(the SSH hosts' wheelhouse, `providers.wheelhouse`, for that Python) are
installed here, by this machine's pip (`--target` with the image's
platform), into a venv laid out for the image's interpreter: its
`bin/python` is a symlink to the image's own python, which exists only
inside the container. The venv is bind-mounted read-only at AGENT_MOUNT:
the agent (forked into the container by this machine: host/beside.py)
writes its helper commands (`phalanx-sync`, …) for `AGENT_MOUNT/bin/python`
and runs Python test children with it, and the image's own Python stays as
it was for the stages.

A venv is cached by the wheelhouse's key and the interpreter's path under
~/.cache/phalanx/container-agent/ (pruned as the other caches are).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from phalanx.providers import wheelhouse as wh
from phalanx.providers.cache import build, taken
from phalanx.providers.containers import Engine, EngineError
from phalanx.providers.pythons import FIND_PYTHONS, RemotePython, choose_python

AGENT_MOUNT = "/opt/phalanx-agent"
PROBE_TIMEOUT = 60.0  # seconds for the throwaway container that looks at an image
PIP_TIMEOUT = 300.0


class ImageRefused(Exception):
    """The image cannot run the agent; the message names it and what it lacks."""


@dataclass(frozen=True)
class ImagePython:
    python: RemotePython
    libc: str  # "glibc", "musl" (platform.libc_ver()'s name), "" when unknown


_LIBC = (
    'p=$(command -v python3) && "$p" -c '
    '\'import platform; print("libc", platform.libc_ver()[0] or "-")\' 2>/dev/null; true'
)


def parse_probe(image: str, listing: str) -> ImagePython:
    """What `probe`'s script printed, judged: ImageRefused naming the image
    and what it lacks."""
    chosen = choose_python(listing)
    if isinstance(chosen, str):
        raise ImageRefused(f"image {image} cannot run phalanx's agent: {chosen}")
    libc = next((line.split()[1] for line in listing.splitlines() if line.startswith("libc ")), "-")
    libc = "" if libc == "-" else libc
    if libc and libc != "glibc":
        raise ImageRefused(
            f"image {image} cannot run phalanx's agent: its Python is built on {libc}, and the "
            "agent's wheels (manylinux) need glibc"
        )
    return ImagePython(chosen, libc)


async def probe(engine: Engine, image: str, cache: Path | None = None) -> ImagePython:
    """The image's Python, asked of a throwaway container once per image
    content (the answer is kept by the image's id)."""
    image_id = await engine.image_id(image)
    if image_id is None:
        raise ImageRefused(
            f"image {image} is not on this machine ({engine.kind} images); build it "
            "(phalanx image build --container, podman build) or load it first"
        )
    kept = (cache or default_cache()) / "probes" / f"{image_id.removeprefix('sha256:')}.txt"
    with contextlib.suppress(OSError):
        return parse_probe(image, kept.read_text())
    listing = await _ask(engine, image)
    found = parse_probe(image, listing)
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(listing)
    return found


async def _ask(engine: Engine, image: str) -> str:
    try:
        code, out, err = await engine.call(
            "run", "--rm", "--network", "none", *engine.run_options(),
            "--entrypoint", "/bin/sh", image, "-c", f"{_LIBC}\n{FIND_PYTHONS}",
            timeout=PROBE_TIMEOUT, check=False,
        )  # fmt: skip
    except TimeoutError:
        raise ImageRefused(f"image {image}: a container of it did not answer") from None
    if code != 0:
        said = (err.strip() or out.strip() or f"exit code {code}").splitlines()[-1]
        raise ImageRefused(f"image {image} cannot run phalanx's agent: no usable /bin/sh ({said})")
    return out


COMPILED = ".compiled"  # the mark of a venv whose modules the image's Python compiled


async def compile_in(engine: Engine, image: str, venv: Path) -> None:
    """The venv's modules compiled by the image's own Python, once: the
    agent's mount is read-only, and an agent that compiled phalanx and
    pydantic at each start would take seconds to connect."""
    if (venv / COMPILED).exists():
        return
    await engine.call(
        "run", "--rm", "--network", "none", *engine.run_options(),
        "--volume", f"{venv}:{AGENT_MOUNT}", "--entrypoint", f"{AGENT_MOUNT}/bin/python",
        image, "-m", "compileall", "-q", "-j", "0", f"{AGENT_MOUNT}/lib",
        timeout=PIP_TIMEOUT,
    )  # fmt: skip
    (venv / COMPILED).touch()


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "phalanx" / "container-agent"


def agent_venv(python: RemotePython, cache: Path | None = None) -> Path:
    """The agent's venv for an image whose interpreter is `python`, made
    now unless cached. Blocking (pip): run it in a thread from async code."""
    cache = cache or default_cache()
    target = wh.Target(python.version, python.machine)
    house = wh.wheelhouse(target)
    digest = hashlib.sha256(f"{house.key}\0{python.path}".encode()).hexdigest()[:12]
    final = cache / f"{house.key}-{target.tag}-{digest}"
    if not final.is_dir():
        build(final, lambda into: _lay_out(into, python, house, target))
    else:
        taken(final)
    # Mounted into the containers, whose user may be any: readable by all
    # (the cache makes its folders private).
    final.chmod(0o755)
    return final


def _lay_out(into: Path, python: RemotePython, house: wh.Wheelhouse, target: wh.Target) -> None:
    major, minor = python.version
    (into / "pyvenv.cfg").write_text(
        f"home = {Path(python.path).parent}\n"
        "include-system-site-packages = false\n"
        f"version = {major}.{minor}\n"
    )
    binary = into / "bin"
    binary.mkdir()
    (binary / "python").symlink_to(python.path)
    (binary / "python3").symlink_to("python")
    site = into / "lib" / f"python{major}.{minor}" / "site-packages"
    site.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-index", "--find-links", str(house.path), "--no-compile",
               "--target", str(site), *target.pip_options(), wh.DIST]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"pip could not lay out the agent for containers: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise EngineError(f"pip could not lay out the agent for {target.tag}: {last}")
