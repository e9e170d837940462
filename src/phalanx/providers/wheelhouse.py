"""The agent's wheelhouse: every wheel a remote host needs to run
`python -m phalanx.host`, built here once, so the remote needs no package
index.

It holds phalanx itself, packed here from the very files this process
imports (an editable dev tree ships its current code; an installed phalanx
needs no source tree nor build backend), the agent's own requirements
(`AGENT_REQUIREMENTS`, not the service's stack) and pip. Those come from
`pip download --only-binary=:all:` for the remote's Python version and
machine (manylinux wheels), which need not be this machine's. It is the one
step that needs a package index, here. A wheelhouse is cached under
`~/.cache/phalanx/wheelhouse/<version>-<key>/`; the key hashes phalanx's
files, the requirements and the target, so a changed source tree builds a
new one and an unchanged one is reused.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import phalanx
from phalanx.providers.cache import build, taken

# What `phalanx.host` imports, and nothing more (tests/providers/test_ssh.py
# imports every module of it in a venv made from the wheelhouse alone):
# msgspec (the wire messages), pydantic and pydantic-settings (the settings
# of walks),
# websockets (the link to the coordinator), uvloop (its event loop), PyYAML
# (the declarative runtime),
# allpairspy (walks). Their version bounds come from phalanx's own metadata
# (pyproject), so they are kept in one place. Left out: the service's stack,
# and dask (a walk's dask executor on an SSH host says it needs it).
AGENT_REQUIREMENTS = (
    "msgspec",
    "pydantic",
    "pydantic-settings",
    "websockets",
    "uvloop",
    "pyyaml",
    "allpairspy",
)
DIST = "phalanx"
PIP_TIMEOUT = 600.0  # seconds for pip to fetch the wheels


class WheelhouseError(Exception):
    """The wheelhouse could not be built (pip failed, no index reachable here)."""


@dataclass(frozen=True)
class Target:
    """The interpreter a wheelhouse is for: CPython `python` on `machine`."""

    python: tuple[int, int]
    machine: str  # platform.machine(): x86_64, aarch64

    @property
    def tag(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}-{self.machine}"

    def pip_options(self) -> list[str]:
        version = f"{self.python[0]}{self.python[1]}"
        return [
            "--only-binary=:all:",
            "--implementation", "cp",
            "--python-version", f"{self.python[0]}.{self.python[1]}",
            "--abi", f"cp{version}",
            "--platform", f"manylinux2014_{self.machine}",
            "--platform", f"manylinux_2_17_{self.machine}",
        ]  # fmt: skip


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    key: str  # <version>-<hash>: what an installed agent is checked against

    @property
    def wheels(self) -> list[Path]:
        return sorted(self.path.glob("*.whl"))


def version() -> str:
    return importlib.metadata.version(DIST)


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    return re.sub(r"[-_.]+", "-", match.group(0)).lower() if match else ""


def agent_requirements() -> list[str]:
    """The agent's requirements with phalanx's own version bounds."""
    declared = {
        _name(r): r.split(";")[0].strip()
        for r in importlib.metadata.requires(DIST) or []
        if "extra ==" not in r
    }
    missing = [n for n in AGENT_REQUIREMENTS if _name(n) not in declared]
    if missing:
        raise WheelhouseError(f"phalanx does not depend on {', '.join(missing)} any more")
    return [declared[_name(n)] for n in AGENT_REQUIREMENTS]


def _package_files() -> Iterator[tuple[str, Path]]:
    """phalanx's files as this process imports them, by their path in a wheel."""
    root = Path(phalanx.__file__).resolve().parent
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield f"phalanx/{path.relative_to(root).as_posix()}", path


def key_for(target: Target) -> str:
    digest = hashlib.sha256()
    for name, path in _package_files():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update("\n".join([*agent_requirements(), target.tag]).encode())
    return f"{version()}-{digest.hexdigest()[:16]}"


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "phalanx" / "wheelhouse"


def wheelhouse(target: Target, cache: Path | None = None) -> Wheelhouse:
    """The wheelhouse for `target`, built now unless it is in the cache.
    Blocking (pip): run it in a thread from async code."""
    cache = cache or default_cache()
    key = key_for(target)
    final = cache / key
    if final.is_dir():
        taken(final)
        return Wheelhouse(final, key)

    def fill(into: Path) -> None:
        _pack_phalanx(into)
        _fetch(into, ["pip", *agent_requirements()], target)

    return Wheelhouse(build(final, fill, prefix=f".{key}-"), key)


def _fetch(into: Path, requirements: list[str], target: Target) -> None:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--dest", str(into), *target.pip_options(), *requirements]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WheelhouseError(f"pip could not fetch the agent's wheels: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise WheelhouseError(f"pip could not fetch the agent's wheels for {target.tag}: {last}")


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _pack_phalanx(into: Path) -> Path:
    """A wheel of the phalanx this process runs. It depends on the agent's
    requirements only: `pip install phalanx` from the wheelhouse brings
    exactly them."""
    v = version()
    info = f"{DIST}-{v}.dist-info"
    metadata = "".join(
        [
            "Metadata-Version: 2.1\n",
            f"Name: {DIST}\n",
            f"Version: {v}\n",
            "Requires-Python: >=3.11\n",
            *(f"Requires-Dist: {r}\n" for r in agent_requirements()),
        ]
    )
    wheel_meta = (
        "Wheel-Version: 1.0\nGenerator: phalanx\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    path = into / f"{DIST}-{v}-py3-none-any.whl"
    records: list[str] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:

        def add(name: str, data: bytes) -> None:
            wheel.writestr(name, data)
            records.append(f"{name},{_record_hash(data)},{len(data)}")

        for name, source in _package_files():
            add(name, source.read_bytes())
        add(f"{info}/METADATA", metadata.encode())
        add(f"{info}/WHEEL", wheel_meta.encode())
        records.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return path


def main() -> int:
    """Build (or find) the wheelhouse for this interpreter; print its path."""
    import platform

    print(wheelhouse(Target(sys.version_info[:2], platform.machine())).path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
