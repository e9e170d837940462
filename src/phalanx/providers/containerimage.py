"""`phalanx image build --container`: a Debian container image made from
Debian's mirror (no registry needed), with python3 for the agent and the
packages asked for, cached by content.

mmdebstrap writes the root file system as a tar to its stdout, which the
engine imports as an image (`podman import -`): nothing is unpacked on this
machine's disk, and no root shell in a container is needed. The image's
tag holds the hash of what went into it (suite, mirror, packages, FORMAT),
so the same request is built once; a folder per image under
~/.cache/phalanx/container-images/ is its use mark, and an image unused
for the caches' time is removed from the engine with its folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from phalanx.providers import cache
from phalanx.providers.containers import Engine

FORMAT = 1  # bump when what an image holds changes: old ones are not reused
REPOSITORY = "localhost/phalanx-debian"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What the agent and a stage's usual commands need beside Debian's
# essential set: Python for the agent, `ip` and `ps` for looking around.
BASE_PACKAGES = ("python3", "iproute2", "procps")
BUILD_TIMEOUT = 1800.0  # seconds: the mirror may be slow
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")  # fullmatch: "$" would pass a trailing newline


class ImageBuildError(Exception):
    """The image could not be built; the message says what failed."""


@dataclass(frozen=True)
class ContainerImage:
    tag: str  # the content tag (REPOSITORY:<key>)
    built: bool  # False: it was already there


def packages_of(text: str) -> tuple[str, ...]:
    """`--packages a,b`: Debian package names, checked."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in names if not _PACKAGE.fullmatch(p)]
    if bad:
        raise ImageBuildError(f"--packages: {bad[0]!r} is not a Debian package name")
    return names


def content_key(packages: tuple[str, ...], suite: str = SUITE, mirror: str = MIRROR) -> str:
    wanted = sorted({*BASE_PACKAGES, *packages})
    text = "\n".join([str(FORMAT), suite, mirror, *wanted])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "phalanx" / "container-images"


def bootstrapper() -> str:
    path = shutil.which("mmdebstrap")
    if path is None:
        raise ImageBuildError(
            "building a container image needs mmdebstrap (apt-get install mmdebstrap)"
        )
    return path


async def build(
    engine: Engine,
    packages: tuple[str, ...] = (),
    tag: str | None = None,
    cache_dir: Path | None = None,
    suite: str = SUITE,
    mirror: str = MIRROR,
) -> ContainerImage:
    """The image with `packages`, built unless the engine has it; also
    tagged `tag` when given."""
    key = content_key(packages, suite, mirror)
    image = f"{REPOSITORY}:{key}"
    mark = (cache_dir or default_cache()) / key
    built = False
    if not await engine.image_exists(image):
        await _bootstrap(engine, image, sorted({*BASE_PACKAGES, *packages}), suite, mirror)
        built = True
    mark.mkdir(parents=True, exist_ok=True)
    for unused in cache.taken(mark):
        # An image unused for long goes with its mark (not one of another name).
        if re.fullmatch(r"[0-9a-f]{16}", unused.name):
            await engine.call("rmi", "--force", f"{REPOSITORY}:{unused.name}", check=False)
    if tag:
        await engine.call("tag", image, tag)
    return ContainerImage(image, built)


async def _bootstrap(
    engine: Engine, image: str, packages: list[str], suite: str, mirror: str
) -> None:
    # essential: Debian's required set, without apt (the packages come in
    # from this machine's mmdebstrap), so the image stays small.
    strap = await asyncio.create_subprocess_exec(
        bootstrapper(), "--quiet", "--variant=essential", f"--include={','.join(packages)}",
        "--format=tar", suite, "-", mirror,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    importer = await asyncio.create_subprocess_exec(
        engine.path, "import", "--change", "CMD [\"/bin/bash\"]", "-", image,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        strap_err, import_err = await asyncio.wait_for(
            asyncio.gather(_pipe(strap, importer), _errors(importer)), BUILD_TIMEOUT
        )
    except BaseException:
        for process in (strap, importer):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        raise
    if strap.returncode != 0:
        last = (strap_err.strip().splitlines() or ["(no output)"])[-1]
        raise ImageBuildError(f"mmdebstrap failed ({suite}, {mirror}): {last}")
    if importer.returncode != 0:
        raise ImageBuildError(f"{engine.kind} import failed: {import_err.strip()}")


async def _pipe(strap: asyncio.subprocess.Process, importer: asyncio.subprocess.Process) -> str:
    """mmdebstrap's tar into the importer; mmdebstrap's errors."""
    assert strap.stdout is not None and strap.stderr is not None and importer.stdin is not None
    errors = asyncio.ensure_future(strap.stderr.read())
    while chunk := await strap.stdout.read(1 << 20):
        importer.stdin.write(chunk)
        await importer.stdin.drain()
    importer.stdin.close()
    await strap.wait()
    return (await errors).decode(errors="replace")


async def _errors(importer: asyncio.subprocess.Process) -> str:
    assert importer.stderr is not None and importer.stdout is not None
    out, err = await asyncio.gather(importer.stdout.read(), importer.stderr.read())
    await importer.wait()
    return err.decode(errors="replace") or out.decode(errors="replace")


def tag_of(key: str) -> str:
    return f"{REPOSITORY}:{key}"
