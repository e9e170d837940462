"""Suite files for the hosts of a run: the XrdTest master's
`/showScript/<path>` (the text) and `/downloadScript/<path>` (as a file),
which real XrdTest suite scripts fetch with
`curl "@proto@://master.xrd.test:@port@/showScript/utils/…"`.

Who may read them: the stages of a running run, and only from that run's
definitions repo. Scripts carry no credential, and an address names no
one (every process of a host shares it; every process of this machine
comes from loopback), so the connection's owner is looked up: the process
at its client end must hold a running run's capability in its environment,
as that run's stages do. On this machine (loopback, netns and container
hosts) the coordinator looks in /proc itself (host/peer.py); on an ssh host
or a VM the host's agent, known by its token, looks on its host when asked
(coordinator/vouching.py), the connection named by its ports there (for an
ssh host, as they were before its reverse forward: providers/forwarded.py).
Everyone else gets 403. Only regular files
inside the repo are served: `..`, absolute paths and symlinks that lead
out of it are refused (404, so nothing tells what exists outside), and so
is anything under `.git/` (a remote's credentials may be in its config).

A run's stages have a better way than their address: the run's own
capability, `/scripts/<run>/<key>/<path>` ($PHALANX_SCRIPTS_URL,
`@scripts_url@`), where the key is an HMAC of the run id under a secret of
this process. It names the run, not a machine, so on a machine shared with
other processes only the run's stages (who were given it) read its files,
and it ends with the run. Files are read in a worker thread, at most
MAX_SCRIPT bytes each (413 beyond), so big ones hold up nothing else;
`phalanx serve` streams them, `phalanx run`'s listener (listener.py) sends
each whole once read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from phalanx.host.peer import capability_of, connection_capability, is_loopback, local_peer
from phalanx.providers import forwarded

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

# The client's address -> the definitions repos of the live runs that hold
# a host whose agent connects from there.
RootsFor = Callable[[str], list[Path]]
# A run id -> the definitions repo of that live run (None: not running).
RunRoot = Callable[[str], Path | None]
VCS_FOLDERS = frozenset({".git", ".hg", ".svn"})
MAX_SCRIPT = 64 * 1024 * 1024  # bytes: the biggest suite file served


class Vouchers(Protocol):
    """The agents, who tell who holds a connection on their hosts (the hub)."""

    def agents_at(self, address: str) -> list[str]: ...

    async def vouch(
        self, agents: Iterable[str], client_port: int, server_port: int
    ) -> list[tuple[str, str]]: ...


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


@dataclass(frozen=True)
class Answer:
    """What a GET for a suite file gets, whichever server sends it: a file
    (as text, or as a download under its name), or a refusal's line."""

    status: int
    file: Path | None = None
    download: bool = False
    text: str = ""


def _refusal(message: str, status: int) -> Answer:
    # Plain text, not JSON: suite scripts fetch with `curl -sSO` (no -f) and
    # run what they got. A JSON body is a valid Python dict literal, so
    # `python fetched.py` would "pass" without a word; this line makes any
    # interpreter stop and show it.
    return Answer(status, text=f"phalanx: {message}\n")


# The routes, as Starlette writes them; `match` reads them for a server that
# routes by itself (`phalanx run`'s listener).
ROUTES = {
    "/showScript/{path:path}": "show",
    "/downloadScript/{path:path}": "download",
    "/scripts/{run_id}/{key}/{path:path}": "keyed",
}


def _pattern(route: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)(?::path)?\}", route)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>{'.*' if part == 'path' else '[^/]+'})"
        for i, part in enumerate(parts)
    )
    return re.compile(regex + "$")


_PATTERNS = {name: _pattern(route) for route, name in ROUTES.items()}


def match(path: str) -> tuple[str, dict[str, str]] | None:
    """Which route a (percent-decoded) path is, and its parameters."""
    for name, pattern in _PATTERNS.items():
        if (found := pattern.match(path)) is not None:
            return name, found.groupdict()
    return None


class SuiteFiles:
    """Who may read which suite file (the module's docstring). `roots_for`
    answers by address alone, only where there are no run capabilities
    (`keys`, `run_root`) to ask for."""

    def __init__(
        self,
        roots_for: RootsFor,
        run_root: RunRoot | None = None,
        keys: ScriptKeys | None = None,
        vouchers: Vouchers | None = None,
    ) -> None:
        self.roots_for = roots_for
        self.run_root = run_root
        self.keys = keys
        self.vouchers = vouchers

    async def answer(
        self,
        route: str,
        params: Mapping[str, str],
        client: tuple[str, int] | None,
        server_port: int | None,
    ) -> Answer:
        """The answer to a GET of `route` (a name of ROUTES) from `client`
        (host, port) to this server's `server_port`."""
        if route == "keyed":
            return await self._keyed(params)
        if self.keys is not None and self.run_root is not None:
            roots = await _held_roots(client, server_port, self.keys, self.run_root, self.vouchers)
        else:
            roots = self.roots_for(client[0] if client is not None else "")
        if not roots:
            return _refusal("suite files are for the hosts of a running run", 403)
        return await _found(roots, params.get("path", ""), download=route == "download")

    async def _keyed(self, params: Mapping[str, str]) -> Answer:
        run_id = params["run_id"]
        if self.keys is None or self.run_root is None:
            return _refusal("this coordinator gives no run capabilities", 404)
        if not self.keys.valid(run_id, params["key"]):
            return _refusal("not this run's key", 403)
        root = self.run_root(run_id)
        if root is None:
            return _refusal(f"run {run_id!r} is not running", 403)
        return await _found([root], params.get("path", ""), download=True)


def script_routes(files: SuiteFiles) -> list[Route]:
    """The routes for Starlette (`phalanx serve`): files streamed from disk."""
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Route

    def endpoint(route: str) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            server = request.scope.get("server")
            found = await files.answer(
                route,
                {k: str(v) for k, v in request.path_params.items()},
                (request.client.host, request.client.port) if request.client is not None else None,
                int(server[1]) if server else None,
            )
            if found.file is None:
                return PlainTextResponse(found.text, status_code=found.status)
            if found.download:
                return FileResponse(found.file, filename=found.file.name)
            return FileResponse(found.file, media_type="text/plain; charset=utf-8")

        return answer

    return [Route(path, endpoint(name), methods=["GET"]) for path, name in ROUTES.items()]


async def _held_roots(
    client: tuple[str, int] | None,
    port: int | None,
    keys: ScriptKeys,
    run_root: RunRoot,
    vouchers: Vouchers | None,
) -> list[Path]:
    """The repos of the running runs whose capability the client process
    (at `client`, connected to this server's `port`) holds."""
    if client is None or not port:
        return []
    client_host, client_port = client
    held: list[tuple[str, str]] = []
    if is_loopback(client_host) and (through := forwarded.through(client_port, port)):
        # Through an ssh host's forward: its agent looks on the host.
        if vouchers is not None:
            held = await vouchers.vouch([through.agent], through.client_port, through.server_port)
    elif is_loopback(client_host):
        # Every local process comes from loopback: ask the client for its run's key.
        one = await asyncio.to_thread(connection_capability, client_port, port)
        held = [one] if one is not None else []
    elif (pid := await asyncio.to_thread(local_peer, client_host, client_port, port)) is not None:
        # A process of this machine in another namespace (a netns or container host).
        one = await asyncio.to_thread(capability_of, pid)
        held = [one] if one is not None else []
    elif vouchers is not None:
        # Another machine (a VM, a host reached directly): the agents connected from there look.
        held = await vouchers.vouch(vouchers.agents_at(client_host), client_port, port)
    roots = []
    for run_id, key in held:
        if keys.valid(run_id, key) and (root := run_root(run_id)) is not None and root not in roots:
            roots.append(root)
    return roots


async def _found(roots: list[Path], relative: str, download: bool) -> Answer:
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
    return Answer(200, found, download)
