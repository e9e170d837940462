"""Suite files for the hosts of a run: the XrdTest master's
`/showScript/<path>` (the text) and `/downloadScript/<path>` (as a file),
which real XrdTest suite scripts fetch with
`curl "@proto@://master.xrd.test:@port@/showScript/utils/…"`.

Who may read them: the hosts of a live run, and only from that run's
definitions repo. A request is answered when it comes from the address of
a connected agent whose host a live run holds (the peer address of the
agent's own authenticated connection); scripts carry no credential, so the
address is what names the host. Everyone else gets 403. Only regular files
inside the repo are served: `..`, absolute paths and symlinks that lead
out of it are refused (404, so nothing tells what exists outside), and so
is anything under `.git/` (a remote's credentials may be in its config).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

# The client's address -> the definitions repos of the live runs that hold
# a host whose agent connects from there.
RootsFor = Callable[[str], list[Path]]
VCS_FOLDERS = frozenset({".git", ".hg", ".svn"})


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


def script_routes(roots_for: RootsFor) -> list[Route]:
    async def find(request: Request) -> Path | Response:
        client = request.client.host if request.client is not None else ""
        roots = roots_for(client)
        if not roots:
            return _refusal("suite files are for the hosts of a running run", 403)
        relative = str(request.path_params.get("path", ""))
        for root in roots:
            if (found := inside(root, relative)) is not None:
                return found
        return _refusal(f"no file {relative!r} in the suite's repo", 404)

    async def show(request: Request) -> Response:
        found = await find(request)
        if isinstance(found, Response):
            return found
        return PlainTextResponse(found.read_bytes().decode("utf-8", errors="replace"))

    async def download(request: Request) -> Response:
        found = await find(request)
        if isinstance(found, Response):
            return found
        return FileResponse(found, filename=found.name)

    return [
        Route("/showScript/{path:path}", show, methods=["GET"]),
        Route("/downloadScript/{path:path}", download, methods=["GET"]),
    ]
