"""Definition repos the service follows: a folder (watched) or a git
repository (polled), loaded into `Catalog` snapshots.

::

    async with DefinitionSource(DirRepo(Path("defs"))) as source:
        source.catalog            # the current snapshot
        async for catalog in source.changes():
            ...                   # each newer snapshot, until the source closes

Every (re)load runs the same loaders as `phalanx validate`
(`load.repo.load_repo`) and publishes a new `Catalog`. A catalog is never
changed after it is published: a reload makes a new one. A run takes the
`Suite` it starts with from the catalog of that moment and keeps it; the
loaders put every script's text into the `Suite`, so neither a reload nor a
changed file reaches a run in progress.

A broken definition never stops the service. Its problems (file, line,
key) are listed under its suite; a suite that loaded before and does not
load now keeps its last good `Suite`, marked `last_good`, beside the
current problems, so its schedule and its runs go on with the definition
that worked; the other suites are not touched. Problems that belong to no
one suite (a cluster file that does not load, a folder that is not a repo)
are the catalog's own `errors`; the suites using such a cluster list it too.

Loading runs in a worker thread, one load at a time for the whole process
(Python definition files are executed with `sys.path` and `sys.modules`
adjusted, which is process-wide). A load that takes longer than
`load_timeout` is reported as a problem and the previous catalog stays
(a thread cannot be stopped: a definition file that never returns holds
the loading lock, and every later load of every source reports the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import threading
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from urllib.parse import urlsplit, urlunsplit

from phalanx.load.errors import DefinitionError
from phalanx.load.repo import Repo, load_repo
from phalanx.model import Cluster, Suite
from phalanx.service.gitauth import NO_HELPERS, Remote, askpass_env, split_credentials

log = logging.getLogger(__name__)

_LOADING = threading.Lock()


# --- what a source follows ----------------------------------------------------


@dataclass(frozen=True)
class DirRepo:
    """`type = "dir"`: a folder on this machine, reloaded when its files change."""

    path: Path
    # Changes are gathered until the folder has been quiet this long (seconds),
    # so an editor's save or a `git checkout` of many files is one reload.
    quiet: float = 0.3
    # and at most this long, so a folder that never stops changing still reloads.
    max_wait: float = 2.0
    force_polling: bool | None = None  # None: watchfiles decides (WATCHFILES_FORCE_POLLING)

    @property
    def label(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class GitRepo:
    """`type = "git"`: cloned into the data folder, fetched every `poll_seconds`."""

    url: str
    branch: str = "main"
    poll_seconds: float = 60.0
    git_timeout: float = 300.0  # one git command (a first clone of a big repo takes a while)

    @property
    def label(self) -> str:
        return f"{redact(self.url)}#{self.branch}"


RepoSpec = DirRepo | GitRepo


# --- the snapshot -------------------------------------------------------------


@dataclass(frozen=True)
class SuiteEntry:
    """One suite of a catalog: its definition to run and its current problems."""

    name: str
    suite: Suite | None  # None: it has never loaded
    errors: tuple[DefinitionError, ...] = ()
    last_good: bool = False  # `suite` is from an earlier load; the current files do not load
    folder: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class Catalog:
    """The suites and clusters of one repo as loaded at one moment."""

    source: str  # the folder, or the git URL (without credentials) and branch
    root: Path  # where the definition files are
    revision: str | None  # the git commit loaded; None for a folder
    loaded_at: datetime
    suites: Mapping[str, SuiteEntry] = field(default_factory=lambda: MappingProxyType({}))
    clusters: Mapping[str, Cluster] = field(default_factory=lambda: MappingProxyType({}))
    errors: tuple[DefinitionError, ...] = ()  # problems that belong to no one suite

    def suite(self, name: str) -> Suite | None:
        """The definition a run of `name` starts with (the last good one if it is broken now)."""
        entry = self.suites.get(name)
        return entry.suite if entry is not None else None

    def schedules(self) -> dict[str, dict[str, str] | None]:
        """Each runnable suite's cron fields, for `schedule.Scheduler.update`."""
        return {
            name: entry.suite.schedule
            for name, entry in self.suites.items()
            if entry.suite is not None
        }

    @property
    def problems(self) -> list[DefinitionError]:
        """Every problem: the catalog's own, then each suite's."""
        found = list(self.errors)
        for entry in self.suites.values():
            found.extend(entry.errors)
        return found


def build_catalog(
    repo: Repo,
    previous: Catalog | None,
    *,
    source: str,
    revision: str | None = None,
) -> Catalog:
    """The catalog of a fresh load, keeping `previous`'s good suites where
    their files no longer load (pure: no I/O)."""
    suites_dir = repo.root / "test-suites"
    entries: dict[str, SuiteEntry] = {
        name: SuiteEntry(name, suite, folder=suite.path) for name, suite in repo.suites.items()
    }
    own: list[DefinitionError] = []
    by_folder: dict[Path, list[DefinitionError]] = {}
    for error in repo.errors:
        folder = _suite_folder(error.file, suites_dir)
        if folder is None:
            own.append(error)
        else:
            by_folder.setdefault(folder, []).append(error)

    before = {e.folder: e for e in previous.suites.values()} if previous is not None else {}
    for folder, errors in by_folder.items():
        old = before.get(folder)
        # A folder that does not load cannot say its suite's name: the name
        # it had when it last loaded, or else the folder's.
        name = old.name if old is not None else folder.name
        if name in entries:
            # another folder's suite has the name (a duplicate): its problem, listed there
            current = entries[name]
            entries[name] = replace(current, errors=(*current.errors, *errors))
            continue
        kept = old.suite if old is not None else None
        entries[name] = SuiteEntry(name, kept, tuple(errors), kept is not None, folder)

    return Catalog(
        source=source,
        root=repo.root,
        revision=revision,
        loaded_at=datetime.now(UTC),
        suites=MappingProxyType(dict(sorted(entries.items()))),
        clusters=MappingProxyType(dict(repo.clusters)),
        errors=tuple(own),
    )


def _suite_folder(file: Path | None, suites_dir: Path) -> Path | None:
    """`test-suites/<folder>` when `file` is in one."""
    if file is None or not file.is_relative_to(suites_dir):
        return None
    parts = file.relative_to(suites_dir).parts
    return suites_dir / parts[0] if parts else None


# --- the source ---------------------------------------------------------------


class DefinitionSource:
    """Follows one repo and publishes a `Catalog` after every reload.

    Entering loads the repo once (a git repo is cloned or fetched first:
    bounded by `git_timeout`) and starts following it; leaving stops that
    and ends every `changes()` iterator. Nothing here raises because of what
    is in the repo or the remote: problems are in the catalog and the log.
    """

    def __init__(
        self,
        spec: RepoSpec,
        *,
        data_dir: Path | None = None,
        load_timeout: float = 120.0,
    ) -> None:
        if isinstance(spec, GitRepo) and data_dir is None:
            raise ValueError("a git repo needs a data folder to clone into")
        self.spec = spec
        self._load_timeout = load_timeout
        self._checkout = (
            data_dir / "repos" / _slug(spec) if isinstance(spec, GitRepo) and data_dir else None
        )
        root = spec.path if isinstance(spec, DirRepo) else self._checkout
        assert root is not None
        self.root = root.resolve() if root.exists() else root.absolute()
        self._catalog = Catalog(source=spec.label, root=self.root, revision=None, loaded_at=_now())
        self._loaded = self._catalog  # the last load's catalog, without `_problem`
        self._problem: DefinitionError | None = None  # reaching the repo failed (git, a hung load)
        self._published = asyncio.Event()
        self._closed = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    async def __aenter__(self) -> DefinitionSource:
        if isinstance(self.spec, GitRepo):
            await self._git_update(first=True)
            self._task = asyncio.create_task(self._poll(self.spec), name="phalanx-git-poll")
        else:
            await self.reload()
            self._task = asyncio.create_task(self._watch(self.spec), name="phalanx-dir-watch")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        self._stop.set()
        self._published.set()
        task, self._task = self._task, None
        if task is not None:
            # The watcher sees the stop event within its step; cancel if it does not.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def changes(self, since: Catalog | None = None) -> AsyncGenerator[Catalog, None]:
        """Each catalog published after `since` (default: the current one);
        when several came while the reader was busy it gets the newest only.
        Ends when the source closes."""
        seen = since if since is not None else self._catalog
        while True:
            if self._catalog is not seen:
                seen = self._catalog
                yield seen
                continue
            if self._closed:
                return
            await self._published.wait()

    async def reload(self) -> Catalog:
        """Load the repo now and publish the result (also after a failed load)."""
        revision = await self._revision() if isinstance(self.spec, GitRepo) else None
        try:
            repo = await asyncio.wait_for(asyncio.to_thread(_load, self.root), self._load_timeout)
        except TimeoutError:
            message = f"loading took longer than {self._load_timeout:g} s; kept the last load"
            self._source_problem(DefinitionError(self.root, None, None, message))
            return self._catalog
        except Exception as exc:
            # The loaders turn every problem they know into a DefinitionError;
            # anything else (a MemoryError, a bug) is reported the same way and
            # the folder is watched on, so the next save is loaded again.
            message = f"loading failed ({type(exc).__name__}: {exc}); kept the last load"
            self._source_problem(DefinitionError(self.root, None, None, message))
            return self._catalog
        catalog = build_catalog(repo, self._loaded, source=self.spec.label, revision=revision)
        if self._problem is None and _same(catalog, self._loaded):
            return self._catalog  # e.g. a file no definition reads was touched
        self._log(catalog)
        self._loaded, self._problem = catalog, None
        self._publish(catalog)
        return catalog

    # --- following a folder ---

    async def _watch(self, spec: DirRepo) -> None:
        from watchfiles import awatch

        while not self._stop.is_set():
            if not self.root.is_dir():
                # Not there (yet): look again now and then; the catalog says so already.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=max(spec.quiet, 1.0))
                if self.root.is_dir():
                    await self.reload()
                continue
            # The watcher starts inside the generator, some time after this
            # source was entered: the first thing it yields (changes, or an
            # empty set after a quiet second) triggers one more load, which
            # sees whatever changed before the watcher was there to see it.
            caught_up = False
            try:
                async for changes in awatch(
                    self.root,
                    stop_event=self._stop,
                    step=max(1, int(spec.quiet * 1000)),
                    debounce=max(1, int(spec.max_wait * 1000)),
                    force_polling=spec.force_polling,
                    rust_timeout=1000,
                    yield_on_timeout=True,
                ):
                    if changes or not caught_up:
                        caught_up = True
                        await self.reload()
                        if not self.root.is_dir():
                            break  # removed: wait for it to come back, above
            except OSError as exc:
                log.warning("watching %s stopped (%s); watching again", self.root, exc)
                await self.reload()

    # --- following a git repository ---

    async def _poll(self, spec: GitRepo) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=spec.poll_seconds)
            if not self._stop.is_set():
                await self._git_update(first=False)

    async def _git_update(self, *, first: bool) -> None:
        """Clone or fetch; reload when the branch moved (and on the first update)."""
        spec = self.spec
        assert isinstance(spec, GitRepo) and self._checkout is not None
        before = await self._revision()
        try:
            if before is None:
                await self._clone(spec)
            else:
                # An older checkout may hold the credentials in its config,
                # and its reflog ("clone: from URL").
                if (await self._git("remote", "get-url", "origin")).strip() != self._remote.url:
                    await self._git("remote", "set-url", "origin", self._remote.url)
                    await self._git("reflog", "expire", "--expire=now", "--all")
                remote = f"refs/remotes/origin/{spec.branch}"
                await self._git("fetch", "--prune", "origin", f"+refs/heads/{spec.branch}:{remote}")
                await self._git("reset", "--hard", remote)
                await self._git("clean", "-ffdx")
        except GitError as exc:
            # The last good checkout (if any) and its catalog stay; the next poll tries again.
            self._source_problem(DefinitionError(None, None, None, f"git: {exc}"))
            return
        after = await self._revision()
        if first or after != before:
            if not first:
                log.info("definitions %s: new commit %s", spec.label, after)
            await self.reload()
        else:
            self._source_problem(None)

    async def _clone(self, spec: GitRepo) -> None:
        assert self._checkout is not None
        if self._checkout.exists():
            # not a usable clone (an interrupted one): start it again
            shutil.rmtree(self._checkout)
        self._checkout.parent.mkdir(parents=True, exist_ok=True)
        await self._git(
            "clone", "--quiet", "--single-branch", "--branch", spec.branch, "--", self._remote.url,
            str(self._checkout),
            cwd=self._checkout.parent,
        )  # fmt: skip

    async def _revision(self) -> str | None:
        if self._checkout is None or not (self._checkout / ".git").exists():
            return None
        try:
            return (await self._git("rev-parse", "HEAD")).strip() or None
        except GitError:
            return None

    @property
    def _remote(self) -> Remote:
        assert isinstance(self.spec, GitRepo)
        return split_credentials(self.spec.url)

    async def _git(self, *args: str, cwd: Path | None = None) -> str:
        spec = self.spec
        assert isinstance(spec, GitRepo) and self._checkout is not None
        remote = self._remote
        env = askpass_env(remote, self._checkout.parent)
        return await run_git(
            (*NO_HELPERS, *args), cwd or self.root, spec.git_timeout, hide=spec.url, env=env
        )

    # --- publishing ---

    def _publish(self, catalog: Catalog) -> None:
        self._catalog = catalog
        event, self._published = self._published, asyncio.Event()
        event.set()

    def _source_problem(self, error: DefinitionError | None) -> None:
        """A problem reaching the repo (or None: gone again): the last load's
        catalog stays, with the problem beside its own."""
        if error == self._problem:
            return
        if error is not None:
            log.warning("definitions %s: %s", self.spec.label, error)
        self._problem = error
        loaded = self._loaded
        extra = (error,) if error is not None else ()
        self._publish(replace(loaded, errors=(*loaded.errors, *extra)))

    def _log(self, catalog: Catalog) -> None:
        for error in catalog.errors:
            log.warning("definitions %s: %s", catalog.source, error)
        for entry in catalog.suites.values():
            for error in entry.errors:
                kept = " (running its last good definition)" if entry.last_good else ""
                log.warning("suite %s%s: %s", entry.name, kept, error)


class GitError(Exception):
    pass


async def run_git(
    args: tuple[str, ...],
    cwd: Path,
    timeout: float,
    *,
    hide: str = "",
    env: dict[str, str] | None = None,
) -> str:
    """`git ARGS` in `cwd`, with `env` added to its environment: its stdout;
    GitError with its message (credentials in `hide` masked) when it fails
    or outlasts `timeout` (then it is killed)."""
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "LC_ALL": "C",
        **(env or {}),
    }
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise GitError(f"`git {_verb(args)}` took longer than {timeout:g} s") from None
    except asyncio.CancelledError:
        # the source is closing: leave no git behind
        process.kill()
        await asyncio.shield(process.wait())
        raise
    if process.returncode != 0:
        text = err.decode(errors="replace").strip() or f"exit status {process.returncode}"
        if hide:
            text = text.replace(hide, redact(hide))
        raise GitError(f"`git {_verb(args)}` failed: {_secretless(text)}")
    return out.decode(errors="replace")


def _verb(args: tuple[str, ...]) -> str:
    """The git command's name, after any `-c NAME=VALUE`."""
    rest = list(args)
    while len(rest) >= 2 and rest[0] == "-c":
        rest = rest[2:]
    return rest[0] if rest else "git"


def redact(url: str) -> str:
    """`url` without a password or token in it (`https://user:***@host/...`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and not (parts.username and parts.scheme in ("http", "https")):
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.password is not None else "***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


_USERINFO = re.compile(r"(https?://)[^/@\s]+@")


def _secretless(text: str) -> str:
    return _USERINFO.sub(r"\1***@", text)


def _same(one: Catalog, other: Catalog) -> bool:
    """Whether two loads found the same definitions (when they were loaded aside)."""
    return (one.revision, one.suites, one.clusters, one.errors) == (
        other.revision,
        other.suites,
        other.clusters,
        other.errors,
    )


def _load(root: Path) -> Repo:
    with _LOADING:
        return load_repo(root)


def _slug(spec: GitRepo) -> str:
    """A folder name for a clone: readable, and distinct per URL and branch."""
    digest = hashlib.sha256(f"{spec.url}#{spec.branch}".encode()).hexdigest()[:12]
    tail = urlsplit(redact(spec.url)).path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{tail}-{spec.branch}").strip("-.") or "repo"
    return f"{readable[:60]}-{digest}"


def _now() -> datetime:
    return datetime.now(UTC)
