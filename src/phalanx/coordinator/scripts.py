"""Suite files for the hosts of a run: the XrdTest master's
`/showScript/<path>` (the text) and `/downloadScript/<path>` (as a file),
which real XrdTest suite scripts fetch with
`curl "@proto@://master.xrd.test:@port@/showScript/utils/…"`.

Who may read them: the hosts of a live run, and only from that run's
definitions repo. A request is answered when it comes from the address of
a connected agent whose host a live run holds (the peer address of the
agent's own authenticated connection); scripts carry no credential. When
the client is a process of this machine (on loopback, where every local
process has that address, or in a netns or container host's namespace),
the address names no one: that process must hold a running run's
capability in its environment (as the run's stages do: coordinator/
peer.py). Only a host on another machine (ssh, a VM) is known by its
address alone. Everyone else gets 403. Only regular files
inside the repo are served: `..`, absolute paths and symlinks that lead
out of it are refused (404, so nothing tells what exists outside), and so
is anything under `.git/` (a remote's credentials may be in its config).

A run's stages have a better way than their address: the run's own
capability, `/scripts/<run>/<key>/<path>` ($PHALANX_SCRIPTS_URL,
`@scripts_url@`), where the key is an HMAC of the run id under a secret of
this process. It names the run, not a machine, so on a machine shared with
other processes only the run's stages (who were given it) read its files,
and it ends with the run. Files are streamed from a worker thread, at most
MAX_SCRIPT bytes each (413 beyond), so big ones hold up nothing else.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from phalanx.coordinator.peer import capability_of, is_loopback, local_peer, loopback_capability

# The client's address -> the definitions repos of the live runs that hold
# a host whose agent connects from there.
RootsFor = Callable[[str], list[Path]]
# A run id -> the definitions repo of that live run (None: not running).
RunRoot = Callable[[str], Path | None]
VCS_FOLDERS = frozenset({".git", ".hg", ".svn"})
MAX_SCRIPT = 64 * 1024 * 1024  # bytes: the biggest suite file served


class ScriptKeys:
    """Each run's capability for its suite files: an HMAC of its id under a
    secret that lives and dies with this process."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def key(self, run_id: str) -> str:
        return hmac.new(self._secret, run_id.encode(), hashlib.sha256).hexdigest()

    def valid(self, run_id: str, key: str) -> bool:
        return hmac.compare_digest(self.key(run_id).encode(), key.encode())


def inside(root: Path, relative: str) -> Path | None:
    """`relative` as a regular file inside `root`, or None."""
    if not relative or relative.startswith("/") or "\\" in relative or "\x00" in relative:
        return None
    if any(part == ".." or _hidden(part) for part in PurePosixPath(relative).parts):
        return None
    try:
        base = root.resolve()
        target = (base / relative).resolve()  # follows symlinks: where it really is
        if not target.is_relative_to(base) or not target.is_file():
            return None
        if any(_hidden(part) for part in target.relative_to(base).parts):
            return None  # a symlink into .git/
    except (OSError, RuntimeError):  # a name too long, a symlink loop
        return None
    return target


def _hidden(part: str) -> bool:
    """A version control folder: `.git/config` may hold a remote's
    credentials, and no suite reads its repo's history over HTTP."""
    return part.lower() in VCS_FOLDERS


def _refusal(message: str, status: int) -> Response:
    # Plain text, not JSON: suite scripts fetch with `curl -sSO` (no -f) and
    # run what they got. A JSON body is a valid Python dict literal, so
    # `python fetched.py` would "pass" without a word; this line makes any
    # interpreter stop and show it.
    return PlainTextResponse(f"phalanx: {message}\n", status_code=status)


def script_routes(
    roots_for: RootsFor, run_root: RunRoot | None = None, keys: ScriptKeys | None = None
) -> list[Route]:
    async def find(request: Request) -> Path | Response:
        client = request.client.host if request.client is not None else ""
        if keys is not None and run_root is not None and is_loopback(client):
            # Every local process comes from loopback: ask the client for its run's key.
            roots = await _loopback_roots(request, keys, run_root)
        else:
            roots = roots_for(client)
            if roots and keys is not None and run_root is not None:
                roots = await _local_roots(request, keys, run_root, roots)
        if not roots:
            return _refusal("suite files are for the hosts of a running run", 403)
        relative = str(request.path_params.get("path", ""))
        return await _found(roots, relative)

    async def show(request: Request) -> Response:
        found = await find(request)
        if isinstance(found, Response):
            return found
        return FileResponse(found, media_type="text/plain; charset=utf-8")

    async def download(request: Request) -> Response:
        found = await find(request)
        if isinstance(found, Response):
            return found
        return FileResponse(found, filename=found.name)

    async def keyed(request: Request) -> Response:
        run_id = str(request.path_params["run_id"])
        if keys is None or run_root is None:
            return _refusal("this coordinator gives no run capabilities", 404)
        if not keys.valid(run_id, str(request.path_params["key"])):
            return _refusal("not this run's key", 403)
        root = run_root(run_id)
        if root is None:
            return _refusal(f"run {run_id!r} is not running", 403)
        found = await _found([root], str(request.path_params.get("path", "")))
        if isinstance(found, Response):
            return found
        return FileResponse(found, filename=found.name)

    return [
        Route("/showScript/{path:path}", show, methods=["GET"]),
        Route("/downloadScript/{path:path}", download, methods=["GET"]),
        Route("/scripts/{run_id}/{key}/{path:path}", keyed, methods=["GET"]),
    ]


async def _loopback_roots(request: Request, keys: ScriptKeys, run_root: RunRoot) -> list[Path]:
    """The repo of the run whose capability the client process holds
    (coordinator/peer.py), if that run is running."""
    server = request.scope.get("server")
    if request.client is None or not server:
        return []
    held = await asyncio.to_thread(loopback_capability, request.client.port, int(server[1]))
    if held is None or not keys.valid(*held):
        return []
    root = run_root(held[0])
    return [root] if root is not None else []


async def _local_roots(
    request: Request, keys: ScriptKeys, run_root: RunRoot, roots: list[Path]
) -> list[Path]:
    """For a host's address: when the client is a process of this machine
    (a netns or container host), the repo of the run whose capability it
    holds, as on loopback; on another machine (an ssh host, a VM), `roots`."""
    server = request.scope.get("server")
    if request.client is None or not server:
        return []
    client = request.client
    pid = await asyncio.to_thread(local_peer, client.host, client.port, int(server[1]))
    if pid is None:
        return roots
    held = await asyncio.to_thread(capability_of, pid)
    if held is None or not keys.valid(*held):
        return []
    root = run_root(held[0])
    return [root] if root is not None else []


async def _found(roots: list[Path], relative: str) -> Path | Response:
    """The file `relative` in the first of `roots` that has it (looked up
    in a worker thread: resolving touches the disk), within MAX_SCRIPT."""

    def look() -> tuple[Path, int] | None:
        for root in roots:
            if (found := inside(root, relative)) is not None:
                return found, found.stat().st_size
        return None

    try:
        hit = await asyncio.to_thread(look)
    except OSError:
        hit = None
    if hit is None:
        return _refusal(f"no file {relative!r} in the suite's repo", 404)
    found, size = hit
    if size > MAX_SCRIPT:
        return _refusal(f"{relative!r} is bigger than {MAX_SCRIPT} bytes, the most served", 413)
    return found
