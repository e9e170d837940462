"""Hostile YAML: an alias bomb and a huge file are definition errors with
file and line, found quickly and in little memory, by the loader, by
`phalanx validate`, and by the service's folder watcher (which keeps going)."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phalanx.load.errors import DefinitionErrors
from phalanx.load.yamlsrc import MAX_EXPANDED_NODES, MAX_FILE_BYTES, parse, read
from phalanx.service.definitions import DefinitionSource, DirRepo
from tests.service.test_definitions import make_repo, suite_file, until


def laughs(levels: int) -> str:
    """The classic: each level is nine aliases of the one before."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    names = "abcdefghijklmnop"
    for depth in range(1, levels):
        here, before = names[depth], names[depth - 1]
        lines.append(f"{here}: &{here} [" + ", ".join([f"*{before}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_an_error_naming_its_line_and_key() -> None:
    # Six levels: 9**6 = 531,441 values once expanded, past the bound; the
    # fifth level (59,049) is still under it, so the sixth key is named.
    started = time.monotonic()
    with pytest.raises(DefinitionErrors) as caught:
        parse("name: bomb\n" + laughs(6), Path("suite.yaml"))
    assert time.monotonic() - started < 5
    (error,) = caught.value.errors
    assert (error.file, error.line, error.key) == (Path("suite.yaml"), 7, "f")
    assert f"{MAX_EXPANDED_NODES:,}" in error.message
    assert str(error).startswith("suite.yaml:7: f:")


def test_a_nine_by_nine_bomb_is_refused_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(DefinitionErrors):
        parse(laughs(9), Path("suite.yaml"))
    assert time.monotonic() - started < 5


def test_a_recursive_alias_is_an_error() -> None:
    with pytest.raises(DefinitionErrors) as caught:
        parse("name: x\nloop: &loop [1, *loop]\n", Path("s.yaml"))
    (error,) = caught.value.errors
    assert error.line == 2 and error.key == "loop"


def test_aliases_within_the_bound_still_load() -> None:
    text = "base: &base {timeout: 30, tags: [a, b]}\none: *base\ntwo:\n  <<: *base\n  name: b\n"
    src = parse(text, Path("s.yaml"))
    assert src.data["one"] == {"timeout": 30, "tags": ["a", "b"]}
    assert src.data["two"] == {"timeout": 30, "tags": ["a", "b"], "name": "b"}


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    file = tmp_path / "suite.yaml"
    line = "# " + "x" * 1021 + "\n"  # 1 KiB a line
    with file.open("w") as out:
        out.write("name: big\n")
        for _ in range(MAX_FILE_BYTES // len(line) + 100):
            out.write(line)
    with pytest.raises(DefinitionErrors) as caught:
        read(file)
    (error,) = caught.value.errors
    assert error.file == file
    # The limit falls inside line 2049: the header, then 2048 lines of 1 KiB.
    assert error.line == MAX_FILE_BYTES // len(line) + 1
    assert "larger than 2 MiB" in error.message


def _bomb_repo(root: Path, levels: int) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "one.yaml").write_text("name: one\nhosts:\n  - {name: h1.t.test}\n")
    folder = root / "test-suites" / "bomb"
    (folder / "tc" / "a").mkdir(parents=True)
    (folder / "tc" / "a" / "run.sh").write_text("true\n")
    (folder / "suite.yaml").write_text("cluster: one\ntests: [a]\n" + laughs(levels))
    return folder / "suite.yaml"


def _bounded_memory() -> None:
    # Before the bound, a bomb ate memory until the machine had none left;
    # 1 GiB makes the old behaviour end (in a traceback) instead.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_validate_reports_a_bomb_with_file_and_line_and_exits_2(tmp_path: Path) -> None:
    _bomb_repo(tmp_path / "repo", levels=9)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "validate", str(tmp_path / "repo")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_bounded_memory,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    # Two lines of suite before the bomb: its sixth key (9**6 values) is named.
    assert "repo/test-suites/bomb/suite.yaml:8: f: aliases expand to more than" in done.stderr
    assert time.monotonic() - started < 30


async def test_the_folder_watcher_reports_a_bomb_and_goes_on_watching(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "defs")
    async with DefinitionSource(DirRepo(root, quiet=0.1, max_wait=0.5)) as source:
        assert source.catalog.suites["alpha"].ok
        # Copied into the live repo: reported under its suite, with its line.
        suite_file(root, "alpha").write_text("cluster: pair\ntests: [a]\n" + laughs(6))
        broken = await until(source, lambda c: not c.suites["alpha"].ok)
        (error,) = broken.suites["alpha"].errors
        assert (error.file, error.line, error.key) == (suite_file(root, "alpha"), 8, "f")
        # ... and the watcher is still there: a new suite appears.
        folder = root / "test-suites" / "gamma"
        (folder / "tc" / "a").mkdir(parents=True)
        (folder / "tc" / "a" / "run.sh").write_text("true\n")
        (folder / "suite.yaml").write_text("cluster: pair\ntests: [a]\n")
        await until(source, lambda c: "gamma" in c.suites and c.suites["gamma"].ok)
    await asyncio.sleep(0)


def test_serve_listens_with_a_bomb_in_its_repo_and_lists_it_as_a_problem(
    tmp_path: Path,
) -> None:
    from tests.service.test_serve import start, stop, user_token

    bomb = _bomb_repo(tmp_path / "repo", levels=9)
    (tmp_path / "repo" / "test-suites" / "fine" / "tc" / "a").mkdir(parents=True)
    (tmp_path / "repo" / "test-suites" / "fine" / "tc" / "a" / "run.sh").write_text("true\n")
    (tmp_path / "repo" / "test-suites" / "fine" / "suite.yaml").write_text(
        "cluster: one\ntests: [a]\n"
    )
    served = start(tmp_path, tmp_path / "repo", tmp_path / "data")
    try:
        token = user_token(served, "vera", "viewer")
        with served.client(token) as client:
            suites = {s["name"]: s for s in client.get("/api/suites").json()}
        assert suites["fine"]["ok"]
        assert not suites["bomb"]["ok"]
        assert f"{bomb}:8" in served.log.read_text()
    finally:
        stop(served)
