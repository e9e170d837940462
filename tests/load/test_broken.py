"""Every kind of broken definition: one clear problem each, with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from phalanx.load.errors import DefinitionError, DefinitionErrors
from phalanx.load.repo import find_suite, load_repo

BROKEN = Path(__file__).parents[2] / "examples" / "repo" / "broken"

# suite or cluster → (file relative to the repo, line, key, words in the message)
EXPECTED = {
    "yaml_syntax": ("test-suites/yaml_syntax/suite.yaml", 4, None, "YAML syntax error"),
    "missing_tests": ("test-suites/missing_tests/suite.yaml", 1, "tests", "missing"),
    "unknown_cluster": (
        "test-suites/unknown_cluster/suite.yaml",
        2,
        "cluster",
        "unknown cluster 'nowhere'",
    ),
    "missing_case": (
        "test-suites/missing_case/suite.yaml",
        5,
        "tests.not_there",
        "has no folder",
    ),
    "bad_cron": ("test-suites/bad_cron/suite.yaml", 4, "schedule", "61"),
    "unreachable_script": (
        "test-suites/unreachable_script/suite.yaml",
        5,
        "initialize",
        "unreachable",
    ),
    "python_raises": (
        "test-suites/python_raises/test_suite.py",
        13,
        "getTestSuite",
        "RuntimeError: the inventory service is down",
    ),
    "empty_script": ("test-suites/empty_script/suite.yaml", 4, "finalize", "empty"),
    "typo_key": ("test-suites/typo_key/suite.yaml", 4, "timeuot", "did you mean 'timeout'"),
    "no_hosts": ("clusters/no_hosts.yaml", 1, "hosts", "missing"),
}


def _where(error: DefinitionError) -> tuple[str, int | None, str | None]:
    assert error.file is not None
    return str(error.file.relative_to(BROKEN)), error.line, error.key


def test_validate_finds_exactly_one_problem_per_broken_definition() -> None:
    repo = load_repo(BROKEN)
    found = {_where(e): e.message for e in repo.errors}
    assert len(repo.errors) == len(EXPECTED)
    for name, (file, line, key, words) in EXPECTED.items():
        assert (file, line, key) in found, f"{name}: no problem at {file}:{line} {key}"
        assert words in found[(file, line, key)], name
    assert set(repo.suites) == set(), "every suite of the broken repo has a problem"


@pytest.mark.parametrize("name", [n for n in EXPECTED if n != "no_hosts"])
def test_running_a_broken_suite_reports_the_same_problem(name: str) -> None:
    file, line, key, words = EXPECTED[name]
    with pytest.raises(DefinitionErrors) as caught:
        find_suite(BROKEN, name)
    (error,) = caught.value.errors
    assert _where(error) == (file, line, key)
    assert words in error.message
    assert f"{file}:{line}" in str(error)
