"""The example tree through the CLI: every outcome, the reports, the listing
and selection options."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tests.tree.helpers import EXAMPLE, phalanx, reasons, results, statuses


def test_the_example_tree_runs_every_kind_of_outcome(tmp_path: Path) -> None:
    done = phalanx(str(EXAMPLE), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # tests/fail fails
    data = results(tmp_path)
    assert statuses(data) == {
        "tests/pass": "passed",
        "tests/fail": "failed",
        "tests/skip": "skipped",
        "tests/deps/needs_sh": "passed",
        "tests/deps/unmet_app": "skipped",
        "tests/deps/unmet_python": "skipped",
        "tests/expected_fail": "passed",
        "tests/declarative/counting": "passed",
        "tests/declarative/service_client": "passed",
    }
    why = reasons(data)
    assert why["tests/skip"] == "skip: waiting for a fix upstream"
    assert why["tests/deps/unmet_app"] == "unmet dependency: app no-such-app-phalanx"
    assert "python twisted_no_such_module" in (why["tests/deps/unmet_python"] or "")
    assert "failed as expected (exit code 3)" in (why["tests/expected_fail"] or "")
    assert why["tests/fail"] == "run failed: localhost (exit code 1)"
    # The failing test's output is shown, and kept in its own file.
    assert "expected 42, got 41" in done.stdout
    (folder,) = (tmp_path / "phalanx-results").iterdir()
    fail = next(c for c in data["cases"] if c["name"] == "tests/fail")
    output = fail["stages"][0]["hosts"][0]["output"]
    assert (folder / output).read_text() == "expected 42, got 41\n"


def test_junit_lists_tree_tests_by_folder_and_leaf(tmp_path: Path) -> None:
    phalanx(str(EXAMPLE), "-t", "tests/deps", "-t", "tests/fail", cwd=tmp_path)
    (folder,) = (tmp_path / "phalanx-results").iterdir()
    root = ET.parse(folder / "junit.xml").getroot()
    cases = {(c.get("classname"), c.get("name")) for c in root.iter("testcase")}
    assert cases == {
        ("tests/deps", "needs_sh"),
        ("tests/deps", "unmet_app"),
        ("tests/deps", "unmet_python"),
        ("tests", "fail"),
    }
    skipped = [c for c in root.iter("testcase") if c.find("skipped") is not None]
    assert {c.get("name") for c in skipped} == {"unmet_app", "unmet_python"}
    tap = (folder / "results.tap").read_text()
    assert "not ok" in tap and "# SKIP unmet dependency: app no-such-app-phalanx" in tap


def test_list_shows_a_letter_the_name_and_what_is_unmet(tmp_path: Path) -> None:
    done = phalanx(str(EXAMPLE), "--list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "R tests/pass" in lines
    assert "S tests/skip  (skip: waiting for a fix upstream)" in lines
    assert "U tests/deps/unmet_app  (unmet: app no-such-app-phalanx)" in lines
    assert "X tests/expected_fail  (expected to fail)" in lines
    assert not (tmp_path / "phalanx-results").exists()  # nothing ran


def test_list_tags_counts_tests_per_tag(tmp_path: Path) -> None:
    done = phalanx(str(EXAMPLE), "--list-tags", cwd=tmp_path)
    assert done.returncode == 0
    assert "smoke  3 tests" in done.stdout.splitlines()
    assert "known-bug  1 test" in done.stdout.splitlines()


def test_tag_filters_include_and_exclude(tmp_path: Path) -> None:
    done = phalanx(str(EXAMPLE), "-g", "smoke", "-G", "broken", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n", 1)[1].split() == ["tests/declarative/counting", "tests/pass"]
    # Several -g mean any of them, as in runtests.py.
    either = phalanx(
        str(EXAMPLE), "-g", "smoke", "-g", "known-bug", "-G", "broken", "-l", cwd=tmp_path
    )
    assert either.stdout.split() == [
        "R",
        "tests/declarative/counting",
        "X",
        "tests/expected_fail",
        "(expected",
        "to",
        "fail)",
        "R",
        "tests/pass",
    ]
    ran = phalanx(str(EXAMPLE), "-g", "smoke", cwd=tmp_path)
    assert set(statuses(results(tmp_path))) == {
        "tests/pass",
        "tests/fail",
        "tests/declarative/counting",
    }
    assert ran.returncode == 1


def test_dotted_names_folders_and_regex_select(tmp_path: Path) -> None:
    # --dry-run shows only what would run; --list-terse shows every selected test.
    dotted = phalanx(str(EXAMPLE), "-t", "deps.unmet_app", "--list-terse", cwd=tmp_path)
    assert dotted.stdout.splitlines() == ["0001 D tests/deps/unmet_app no-such-app-phalanx"]
    assert (
        "would run 0 tests"
        in phalanx(str(EXAMPLE), "-t", "deps.unmet_app", "-d", cwd=tmp_path).stdout
    )
    folder = phalanx(str(EXAMPLE), "-t", "deps", "--list-terse", cwd=tmp_path)
    assert len(folder.stdout.splitlines()) == 3
    folder_dry = phalanx(str(EXAMPLE), "-t", "deps", "--dry-run", cwd=tmp_path)
    assert folder_dry.stdout.split("\n", 1)[1].split() == ["tests/deps/needs_sh"]
    regex = phalanx(str(EXAMPLE), "--test-regex", "unmet_(app|python)/$", "-l", cwd=tmp_path)
    assert [line.split()[1] for line in regex.stdout.splitlines()] == [
        "tests/deps/unmet_app",
        "tests/deps/unmet_python",
    ]
    skipped = phalanx(
        str(EXAMPLE), "-t", "deps", "-T", "unmet", "-T", "nothing", "-l", cwd=tmp_path
    )
    assert [line.split()[1] for line in skipped.stdout.splitlines()] == ["tests/deps/needs_sh"]
    typo = phalanx(str(EXAMPLE), "-t", "tests/nope", cwd=tmp_path)
    assert typo.returncode == 2 and "-t tests/nope" in typo.stderr


def test_number_repeats_and_random_order_is_reproducible_by_seed(tmp_path: Path) -> None:
    args = (str(EXAMPLE), "-t", "tests/declarative", "-t", "tests/pass", "--number", "2", "-d")
    plain = phalanx(*args, cwd=tmp_path).stdout.split("\n", 1)[1].split()
    assert plain == [
        "tests/declarative/counting#1",
        "tests/declarative/service_client#1",
        "tests/pass#1",
        "tests/declarative/counting#2",
        "tests/declarative/service_client#2",
        "tests/pass#2",
    ]
    first = phalanx(*args, "--random-order", "--seed", "7", cwd=tmp_path).stdout
    again = phalanx(*args, "--random-order", "--seed", "7", cwd=tmp_path).stdout
    assert first == again and "seed 7" in first
    assert sorted(first.split("\n", 2)[2].split()) == sorted(plain)
    ran = phalanx(str(EXAMPLE), "-t", "tests/pass", "--number", "3", cwd=tmp_path)
    assert ran.returncode == 0
    assert statuses(results(tmp_path)) == {f"tests/pass#{i}": "passed" for i in (1, 2, 3)}
