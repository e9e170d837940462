"""Choosing cases the way a pytest user does, on suites and test trees alike:
`-k EXPR`, `-g TAG`, `--list [--json]`, `--last-failed`, `--failed-first`
(issue 23, item 7). Real `phalanx` runs of small suites in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phalanx.keywords import KeywordError, matches, parse
from tests.test_cli import phalanx
from tests.tree.helpers import EXAMPLE


def tagged_suite(root: Path) -> Path:
    """A suite of four cases with tags; `flaky` fails until `fixed` exists in root."""
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "c.yaml").write_text("name: c\nhosts:\n  - name: h1.phalanx.test\n")
    suite = root / "test-suites" / "s"
    suite.mkdir(parents=True)
    (suite / "suite.yaml").write_text(
        "name: s\ncluster: c\ntests:\n"
        "  - {name: login_ok, tags: [fast], run: 'true'}\n"
        "  - {name: login_slow, tags: [slow], run: 'true'}\n"
        f"  - {{name: flaky, tags: [fast], run: 'test -e {root}/fixed'}}\n"
        "  - {name: logout, description: leaves, run: 'true'}\n"
    )
    return suite


def ran(cwd: Path) -> list[dict[str, str]]:
    """The cases of the latest run, in the order they ran."""
    latest = sorted((cwd / "phalanx-results").iterdir())[-1]
    return json.loads((latest / "results.json").read_text())["cases"]  # type: ignore[no-any-return]


def names(listing: str) -> list[str]:
    return [line.split()[0] for line in listing.splitlines()[:-1]]


def test_k_and_g_select_a_suites_cases_and_list_shows_them(tmp_path: Path) -> None:
    suite = tagged_suite(tmp_path / "repo")
    listed = phalanx("run", str(suite), "--list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert names(listed.stdout) == ["login_ok", "login_slow", "flaky", "logout"]
    assert "tags: slow" in listed.stdout and listed.stdout.endswith("4 cases\n")
    keyword = phalanx("run", str(suite), "-k", "LOGIN and not slow", "--list", cwd=tmp_path)
    assert names(keyword.stdout) == ["login_ok"]
    by_tag = phalanx("run", str(suite), "-k", "fast or logout", "--list", cwd=tmp_path)
    assert names(by_tag.stdout) == ["login_ok", "flaky", "logout"]
    tag = phalanx("run", str(suite), "-g", "fast", "-G", "slow", "--list", cwd=tmp_path)
    assert names(tag.stdout) == ["login_ok", "flaky"]
    as_json = phalanx("run", str(suite), "-g", "slow", "--list", "--json", cwd=tmp_path)
    assert json.loads(as_json.stdout) == [
        {"name": "login_slow", "kind": "scripts", "tags": ["slow"], "roles": [], "description": ""}
    ]
    assert not (tmp_path / "phalanx-results").exists()  # listing runs nothing
    # and a run takes the same selection
    done = phalanx("run", str(suite), "-k", "login", "-g", "fast", "--plain", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [c["name"] for c in ran(tmp_path)] == ["login_ok"]


def test_a_bad_or_empty_selection_is_a_usage_error_that_runs_nothing(tmp_path: Path) -> None:
    suite = tagged_suite(tmp_path / "repo")
    bad = phalanx("run", str(suite), "-k", "login and (", cwd=tmp_path)
    assert bad.returncode == 2
    assert "-k 'login and (': expected a name at the end" in bad.stderr
    empty = phalanx("run", str(suite), "-g", "nosuchtag", cwd=tmp_path)
    assert empty.returncode == 2 and "leaves no case to run" in empty.stderr
    lonely_json = phalanx("run", str(suite), "--json", cwd=tmp_path)
    assert lonely_json.returncode == 2 and "--json without a FILE" in lonely_json.stderr
    assert not (tmp_path / "phalanx-results").exists()


def test_last_failed_and_failed_first_follow_the_previous_run(tmp_path: Path) -> None:
    suite = tagged_suite(tmp_path / "repo")
    first = phalanx("run", str(suite), "--lf", "--plain", cwd=tmp_path)
    assert first.returncode == 1
    assert "no earlier run of s" in first.stderr and len(ran(tmp_path)) == 4
    again = phalanx("run", str(suite), "--failed-first", "--list", cwd=tmp_path)
    assert names(again.stdout) == ["flaky", "login_ok", "login_slow", "logout"]
    assert "1 case did not pass in run" in again.stderr
    (tmp_path / "repo" / "fixed").touch()
    only = phalanx("run", str(suite), "--last-failed", "--plain", cwd=tmp_path)
    assert only.returncode == 0, only.stdout + only.stderr
    assert [(c["name"], c["status"]) for c in ran(tmp_path)] == [("flaky", "passed")]
    # nothing failed last time: every case, as pytest does
    every = phalanx("run", str(suite), "--lf", "--list", cwd=tmp_path)
    assert len(names(every.stdout)) == 4 and "nothing failed in run" in every.stderr


def test_a_tree_takes_the_same_k_and_list_json_and_a_bare_k_keeps_runtests_meaning(
    tmp_path: Path,
) -> None:
    keyword = phalanx("run", str(EXAMPLE), "-k", "declarative and not service", "-l", cwd=tmp_path)
    assert keyword.stdout.splitlines() == ["R tests/declarative/counting"]
    listed = phalanx("run", str(EXAMPLE), "-g", "smoke", "--list", "--json", cwd=tmp_path)
    rows = json.loads(listed.stdout)
    assert {r["name"] for r in rows} >= {"tests/declarative/counting"}
    assert all("smoke" in r["tags"] and r["status"] in "RXSU" for r in rows)
    # runtests.py's -k (keep core) still works bare, before another option
    bare = phalanx("run", str(EXAMPLE), "-k", "-t", "tests/pass", "-l", cwd=tmp_path)
    assert bare.returncode == 0 and bare.stdout.splitlines() == ["R tests/pass"]


@pytest.mark.parametrize(
    ("expression", "name", "tags", "expected"),
    [
        ("login", "test_LOGIN_ok", (), True),
        ("login and not slow", "login_slow", (), False),
        ("(a or b) and c", "b_c", (), True),
        ("smoke", "x", ("smoke",), True),
        ("smok", "x", ("smoke",), False),  # a tag is matched whole, a name in part
        ("not not x", "x", (), True),
    ],
)
def test_keyword_expressions_read_as_pytest_reads_them(
    expression: str, name: str, tags: tuple[str, ...], expected: bool
) -> None:
    assert matches(parse(expression), name, tags) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("a and", "expected a name at the end"),
        ("a b", "expected 'and', 'or' or the end at column 3, found 'b'"),
        ("(a", "expected ')' at the end"),
        ("a = b", "unexpected '=' at column 3"),
        ("", "give a name or an expression"),
    ],
)
def test_a_bad_expression_says_what_and_where(expression: str, message: str) -> None:
    with pytest.raises(KeywordError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(expression)


def test_a_listing_whose_reader_leaves_early_ends_quietly(tmp_path: Path) -> None:
    import subprocess
    import sys

    tree = tmp_path / "tests"
    tree.mkdir()
    # more than a pipe holds (64 KiB), so the writer meets the closed end
    names = [f"t{i:04d}_{'x' * 40}" for i in range(3000)]
    (tree / "tests.yaml").write_text("tests:\n" + "".join(f"    - test: '{n}'\n" for n in names))
    for name in names:
        (tree / name).mkdir()
        (tree / name / "test-config.yaml").write_text("testinfo:\n    summary: x\n")
        (tree / name / "run-test").write_text("#!/bin/sh\n")
        (tree / name / "run-test").chmod(0o755)
    listing = subprocess.Popen(
        [sys.executable, "-m", "phalanx.cli", "run", str(tree), "-l"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert listing.stdout is not None and listing.stderr is not None
    assert listing.stdout.readline() == f"R tests/t0000_{'x' * 40}\n"
    listing.stdout.close()  # as `| head -1` does
    try:
        assert listing.wait(timeout=60) == 0
    finally:
        listing.kill()
    assert "Traceback" not in listing.stderr.read()
    listing.stderr.close()
