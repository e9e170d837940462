"""Definition repos followed by the service: a watched folder and a polled git
repository, broken and fixed again while the source runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from phalanx.load.repo import load_repo
from phalanx.service.definitions import (
    Catalog,
    DefinitionSource,
    DirRepo,
    GitRepo,
    build_catalog,
    redact,
)

CLUSTER = "name: pair\nhosts:\n  - {name: srv1.t.test}\n  - {name: cli1.t.test}\n"
GOOD = "description: {version}\ncluster: pair\nschedule: '0 3 * * *'\ntests: [a]\n"
BROKEN = "description: broken\ncluster: pair\ntimeout: soon\ntests: [a]\n"


def suite_file(root: Path, name: str) -> Path:
    return root / "test-suites" / name / "suite.yaml"


def make_repo(root: Path) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "pair.yaml").write_text(CLUSTER)
    for name in ("alpha", "beta"):
        (root / "test-suites" / name / "tc" / "a").mkdir(parents=True)
        (root / "test-suites" / name / "tc" / "a" / "run.sh").write_text(f"echo {name}\n")
        suite_file(root, name).write_text(GOOD.format(version="v1"))
    return root


async def until(source: DefinitionSource, check: Callable[[Catalog], bool]) -> Catalog:
    """The first catalog (the current one or a newer) that passes `check`."""
    catalog = source.catalog
    async with asyncio.timeout(20):
        while not check(catalog):
            async with contextlib.aclosing(source.changes(since=catalog)) as newer:
                catalog = await anext(newer)
    return catalog


def description(catalog: Catalog, name: str) -> str | None:
    suite = catalog.suite(name)
    return suite.description if suite is not None else None


async def test_a_folder_broken_and_fixed_again_keeps_the_last_good_suite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_repo(tmp_path / "defs")
    caplog.set_level(logging.WARNING)
    async with DefinitionSource(DirRepo(root, quiet=0.1, max_wait=0.5)) as source:
        first = source.catalog
        assert sorted(first.suites) == ["alpha", "beta"]
        assert all(e.ok and not e.last_good for e in first.suites.values())
        assert description(first, "alpha") == "v1" and first.revision is None
        assert set(first.clusters) == {"pair"} and first.errors == ()
        beta = first.suite("beta")

        suite_file(root, "alpha").write_text(BROKEN)
        broken = await until(source, lambda c: not c.suites["alpha"].ok)
        alpha = broken.suites["alpha"]
        assert alpha.last_good and description(broken, "alpha") == "v1"
        ((error),) = alpha.errors
        assert (error.file, error.line, error.key) == (suite_file(root, "alpha"), 3, "timeout")
        assert broken.suites["beta"].ok and broken.suite("beta") == beta
        assert broken.schedules() == {"alpha": {"minute": "0", "hour": "3", "day": "*",
                                                "month": "*", "day_of_week": "*"},
                                      "beta": {"minute": "0", "hour": "3", "day": "*",
                                               "month": "*", "day_of_week": "*"}}  # fmt: skip
        assert any("suite alpha" in r.getMessage() and "timeout" in r.getMessage()
                   for r in caplog.records)  # fmt: skip

        suite_file(root, "alpha").write_text(GOOD.format(version="v2"))
        fixed = await until(source, lambda c: description(c, "alpha") == "v2")
        assert fixed.suites["alpha"].ok and not fixed.suites["alpha"].last_good

        # a new suite that never loaded is listed with its problems and nothing to run
        (root / "test-suites" / "gamma").mkdir()
        suite_file(root, "gamma").write_text("cluster: nowhere\ntests: [a]\n")
        gamma = await until(source, lambda c: "gamma" in c.suites)
        assert gamma.suite("gamma") is None and not gamma.suites["gamma"].ok
        assert "unknown cluster 'nowhere'" in gamma.suites["gamma"].errors[0].message
        assert "gamma" not in gamma.schedules()

    # published catalogs never change: the first one still says what was loaded then
    assert first.suites["alpha"].ok and description(first, "alpha") == "v1"
    with pytest.raises(TypeError):
        first.suites["alpha"] = first.suites["beta"]  # type: ignore[index]


async def test_changes_ends_when_the_source_closes(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "defs")
    seen: list[Catalog] = []
    async with DefinitionSource(DirRepo(root, quiet=0.1, max_wait=0.5)) as source:

        async def read() -> None:
            async for catalog in source.changes():
                seen.append(catalog)

        reader = asyncio.create_task(read())
        suite_file(root, "beta").write_text(GOOD.format(version="v2"))
        await until(source, lambda c: description(c, "beta") == "v2")
    async with asyncio.timeout(5):
        await reader
    assert seen and description(seen[-1], "beta") == "v2"


async def test_a_folder_that_is_not_there_yet_is_reported_then_loaded(tmp_path: Path) -> None:
    root = tmp_path / "later"
    async with DefinitionSource(DirRepo(root, quiet=0.1)) as source:
        assert source.catalog.suites == {}
        assert "not a definitions repo" in source.catalog.errors[0].message
        make_repo(tmp_path / "staging")
        shutil.move(tmp_path / "staging", root)
        loaded = await until(source, lambda c: "alpha" in c.suites)
        assert loaded.errors == ()


def test_a_removed_suite_leaves_the_catalog_and_a_broken_cluster_is_the_catalogs(
    tmp_path: Path,
) -> None:
    root = make_repo(tmp_path / "defs").resolve()
    first = build_catalog(load_repo(root), None, source="defs")
    shutil.rmtree(root / "test-suites" / "beta")
    (root / "clusters" / "pair.yaml").write_text("name: pair\nhosts: 3\n")
    second = build_catalog(load_repo(root), first, source="defs")
    assert sorted(second.suites) == ["alpha"]
    alpha = second.suites["alpha"]
    assert alpha.last_good and alpha.suite == first.suite("alpha")
    assert any("cluster 'pair' does not load" in e.message for e in alpha.errors)
    assert [e.file for e in second.errors] == [root / "clusters" / "pair.yaml"]
    assert len(second.problems) == len(second.errors) + len(alpha.errors)


# --- git ---------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.test", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def commit(origin: Path, message: str) -> str:
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", message)
    return git(origin, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.fail("git is needed (CI installs it)")
    root = make_repo(tmp_path / "origin")
    git(root, "init", "-q", "-b", "main")
    commit(root, "two suites")
    return root


async def test_a_git_repo_follows_new_commits_and_keeps_the_last_good_suite(
    tmp_path: Path, origin: Path
) -> None:
    spec = GitRepo(url=str(origin), branch="main", poll_seconds=0.2)
    async with DefinitionSource(spec, data_dir=tmp_path / "data") as source:
        first = source.catalog
        assert first.revision == git(origin, "rev-parse", "HEAD")
        assert sorted(first.suites) == ["alpha", "beta"] and first.errors == ()
        assert first.root.is_relative_to((tmp_path / "data" / "repos").resolve())

        suite_file(origin, "alpha").write_text(GOOD.format(version="v2"))
        second_commit = commit(origin, "alpha v2")
        second = await until(source, lambda c: c.revision == second_commit)
        assert description(second, "alpha") == "v2" and second.suites["alpha"].ok

        suite_file(origin, "alpha").write_text(BROKEN)
        bad_commit = commit(origin, "alpha broken")
        bad = await until(source, lambda c: c.revision == bad_commit)
        alpha = bad.suites["alpha"]
        assert alpha.last_good and description(bad, "alpha") == "v2"
        assert [e.key for e in alpha.errors] == ["timeout"]
        assert bad.suites["beta"].ok

        # the checkout follows the branch, even when it is rewritten
        git(origin, "reset", "-q", "--hard", second_commit)
        back = await until(source, lambda c: c.revision == second_commit)
        assert back.suites["alpha"].ok


async def test_a_git_repo_that_cannot_be_reached_is_a_problem_not_a_crash(
    tmp_path: Path, origin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    missing = GitRepo(url=str(tmp_path / "nothing-here"), poll_seconds=0.2)
    async with DefinitionSource(missing, data_dir=tmp_path / "data") as source:
        assert source.catalog.suites == {}
        (error,) = source.catalog.errors
        assert error.message.startswith("git: `git clone` failed")

    # a remote that goes away after the first clone: the last catalog stays, with the problem
    spec = GitRepo(url=str(origin), poll_seconds=0.2)
    async with DefinitionSource(spec, data_dir=tmp_path / "data") as source:
        revision = source.catalog.revision
        origin.rename(tmp_path / "moved")
        gone = await until(source, lambda c: bool(c.errors))
        assert gone.revision == revision and sorted(gone.suites) == ["alpha", "beta"]
        assert "`git fetch` failed" in gone.errors[0].message
        (tmp_path / "moved").rename(origin)
        healed = await until(source, lambda c: not c.errors)
        assert healed.revision == revision


def test_credentials_in_a_git_url_are_never_shown() -> None:
    assert (
        redact("https://bot:s3cret@git.example/defs.git") == "https://bot:***@git.example/defs.git"
    )
    assert redact("https://tok3n@git.example/defs.git") == "https://***@git.example/defs.git"
    assert redact("git@github.com:team/defs.git") == "git@github.com:team/defs.git"
    spec = GitRepo(url="https://bot:s3cret@git.example/defs.git")
    assert "s3cret" not in spec.label


def test_a_git_repo_needs_a_data_folder() -> None:
    with pytest.raises(ValueError, match="data folder"):
        DefinitionSource(GitRepo(url="https://git.example/defs.git"))
