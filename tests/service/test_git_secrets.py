"""A definitions repo cloned with credentials in its URL: the credentials
reach git through askpass, never a command line nor a file in the data
folder, and nothing under `.git/` is ever served to a stage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from phalanx.service.definitions import DefinitionSource, GitRepo
from tests.service.githttp import BACKEND, git_server
from tests.service.test_definitions import commit, git, make_repo, until
from tests.service.test_serve import make_repo as make_serve_repo
from tests.service.test_serve import start, stop, user_token, wait_run

PASSWORD = "hunter2-git-password-xyz"


def _needs_git() -> None:
    if shutil.which("git") is None or not Path(BACKEND).exists():
        pytest.skip("git and git-http-backend are needed (CI installs git)")


async def test_git_credentials_stay_out_of_argv_and_the_data_folder(tmp_path: Path) -> None:
    _needs_git()
    origin = make_repo(tmp_path / "served" / "defs.git")
    git(origin, "init", "-q", "-b", "main")
    commit(origin, "two suites")
    data = tmp_path / "data"
    with git_server(tmp_path / "served", "ci", PASSWORD) as server:
        url = server.url.replace("http://", f"http://ci:{PASSWORD}@") + "defs.git"
        spec = GitRepo(url=url, branch="main", poll_seconds=0.2)
        async with DefinitionSource(spec, data_dir=data) as source:
            assert sorted(source.catalog.suites) == ["alpha", "beta"], source.catalog.errors
            assert PASSWORD not in source.catalog.source
            (origin / "later.txt").write_text("a second commit\n")
            second = commit(origin, "second")
            await until(source, lambda c: c.revision == second)  # a fetch, authenticated
        assert server.requests >= 2
        assert server.exposed == []  # no command line held the password
    for path in data.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


async def test_an_older_checkout_with_credentials_on_disk_is_cleaned(tmp_path: Path) -> None:
    _needs_git()
    origin = make_repo(tmp_path / "served" / "defs.git")
    git(origin, "init", "-q", "-b", "main")
    commit(origin, "two suites")
    data = tmp_path / "data"
    with git_server(tmp_path / "served", "ci", PASSWORD) as server:
        url = server.url.replace("http://", f"http://ci:{PASSWORD}@") + "defs.git"
        spec = GitRepo(url=url, branch="main", poll_seconds=0.2)
        async with DefinitionSource(spec, data_dir=data):
            pass
        (checkout,) = (data / "repos").glob("defs-*")
        # as an older phalanx left it: the URL with its credentials, cloned from it
        git(checkout, "remote", "set-url", "origin", url)
        git(checkout, "reflog", "expire", "--expire=now", "--all")
        git(
            checkout,
            "-c",
            "core.logAllRefUpdates=always",
            "update-ref",
            "-m",
            f"clone: from {url}",
            "HEAD",
            "HEAD",
        )
        assert PASSWORD in (checkout / ".git" / "config").read_text()
        async with DefinitionSource(spec, data_dir=data) as source:
            (origin / "later.txt").write_text("a second commit\n")
            second = commit(origin, "second")
            await until(source, lambda c: c.revision == second)
    for path in data.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_a_stage_cannot_read_the_repos_git_folder(tmp_path: Path) -> None:
    _needs_git()
    repo = make_serve_repo(tmp_path / "defs")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "remote.origin.url", f"https://ci:{PASSWORD}@example.test/x.git")
    case = repo / "test-suites" / "peek" / "tc" / "a"
    case.mkdir(parents=True)
    (case / "run.sh").write_text(
        "for p in .git/config .git/HEAD .git utils/helper.sh; do\n"
        "  echo \"$p $(curl -s -o /dev/null -w '%{http_code}' "
        '@proto@://@coordinator@:@port@/showScript/$p)"\n'
        "  echo \"$p $(curl -s -o /dev/null -w '%{http_code}' "
        '@proto@://@coordinator@:@port@/downloadScript/$p)"\n'
        "done\n"
        "curl -s @proto@://@coordinator@:@port@/showScript/.git/config\n"
    )
    (repo / "test-suites" / "peek" / "suite.yaml").write_text("cluster: one\ntests: [a]\n")
    served = start(tmp_path, repo, tmp_path / "data")
    try:
        token = user_token(served, "otto", "operator")
        with served.client(token) as client:
            run = client.post("/api/suites/peek/runs").json()["id"]
            assert wait_run(client, run, ("passed", "failed", "error"))["status"] == "passed"
            output = client.get(
                f"/api/runs/{run}/output", params={"case": "a", "stage": "run", "host": "h1.t.test"}
            ).text
    finally:
        stop(served)
    assert PASSWORD not in output
    lines = output.splitlines()
    assert lines[:8] == [
        ".git/config 404", ".git/config 404", ".git/HEAD 404", ".git/HEAD 404",
        ".git 404", ".git 404", "utils/helper.sh 200", "utils/helper.sh 200",
    ]  # fmt: skip
