"""suite.yaml: the keys, the case forms, and what they become."""

from __future__ import annotations

from pathlib import Path

import pytest

from phalanx.load.errors import DefinitionErrors
from phalanx.load.repo import check_cases, find_suite, load_repo

CLUSTER = """\
name: pair
hosts:
  - {name: srv1.t.test, roles: [server]}
  - {name: cli1.t.test, roles: [client]}
  - name: cli2.t.test
    roles: [client]
    disks: [{name: d1, size: 200M}]
"""


def make_repo(root: Path, suite_yaml: str, cases: dict[str, dict[str, str]]) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "pair.yaml").write_text(CLUSTER)
    folder = root / "test-suites" / "s"
    folder.mkdir(parents=True)
    (folder / "suite.yaml").write_text(suite_yaml)
    for case, files in cases.items():
        (folder / "tc" / case).mkdir(parents=True)
        for name, text in files.items():
            (folder / "tc" / case / name).write_text(text)
    return folder


def test_tests_gives_the_order_and_unlisted_case_folders_do_not_run(tmp_path: Path) -> None:
    folder = make_repo(
        tmp_path,
        "name: s\ncluster: pair\ntests: [second, first]\n",
        {n: {"run.sh": f"echo {n}\n"} for n in ("first", "second", "unlisted")},
    )
    suite = find_suite(folder)
    assert [c.name for c in suite.cases] == ["second", "first"]
    assert suite.cases[0].stages["run"].text == "echo second\n"


def test_machines_narrow_the_cluster_by_short_or_full_name(tmp_path: Path) -> None:
    folder = make_repo(
        tmp_path,
        "cluster: pair\nmachines: [srv1, cli2.t.test]\ntests: [a]\n",
        {"a": {"run.sh": "true\n"}},
    )
    suite = find_suite(folder)
    assert suite.name == "s"  # the folder's name when the file gives none
    assert [h.name for h in suite.hosts] == ["srv1.t.test", "cli2.t.test"]
    assert suite.hosts[1].disks[0].size == 200 << 20


def test_case_entries_carry_their_own_keys_and_case_yaml_fills_in(tmp_path: Path) -> None:
    folder = make_repo(
        tmp_path,
        """\
cluster: pair
timeout: 5m
tags: {greeting: hi, retries: 3, fast: true}
params: {size: 10}
tests:
  - name: a
    timeout: 90s
    roles: [client]
    tags: [smoke]
    run: |
      echo inline run
  - b
""",
        {
            "a": {"init.sh": "echo init\n"},
            "b": {"run.sh": "true\n", "case.yaml": "timeout: 7\ndescription: from the folder\n"},
        },
    )
    suite = find_suite(folder)
    a, b = suite.cases
    assert suite.timeout == 300
    assert suite.tags == {"greeting": "hi", "retries": "3", "fast": "true"}
    assert suite.params == {"size": 10}
    assert (a.timeout, a.roles, a.tags) == (90, ("client",), ("smoke",))
    assert a.stages["run"].text == "echo inline run\n"
    assert a.stages["initialize"].text == "echo init\n"
    assert (b.timeout, b.description) == (7, "from the folder")


def test_a_python_case_ships_its_module_source(tmp_path: Path) -> None:
    folder = make_repo(
        tmp_path,
        """\
cluster: pair
tests:
  - name: ping
    kind: python
    class: pingtest:Ping
    server_client_mode: true
    test_mode: concurrent
""",
        {},
    )
    (folder / "pingtest.py").write_text("class Ping:\n    pass\n")
    (case,) = find_suite(folder).cases
    assert case.kind == "python"
    assert case.options["modules"] == {"pingtest": "class Ping:\n    pass\n"}
    assert case.options["server_client_mode"] is True


def test_a_missing_python_module_is_a_problem(tmp_path: Path) -> None:
    folder = make_repo(
        tmp_path, "cluster: pair\ntests:\n  - {name: p, kind: python, class: nothere:X}\n", {}
    )
    with pytest.raises(DefinitionErrors) as caught:
        find_suite(folder)
    (error,) = caught.value.errors
    assert (error.line, error.key) == (3, "tests.p.class")
    assert "module 'nothere' not found" in error.message


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    folder = make_repo(
        tmp_path,
        """\
cluster: pair
machines: [nobody]
timeout: soon
alert_failure: SOMETIMES
alert_emails: [not-an-address]
schedule: {minute: '*/5', fortnight: '1'}
tests:
  - {name: a, kind: telepathy}
  - {name: b, colour: blue}
  - b
""",
        {"b": {"run.sh": "true\n"}},
    )
    with pytest.raises(DefinitionErrors) as caught:
        find_suite(folder)
    found = {(e.line, e.key) for e in caught.value.errors}
    assert found == {
        (2, "machines.0"),
        (3, "timeout"),
        (4, "alert_failure"),
        (5, "alert_emails"),
        (6, "schedule"),
        (8, "tests.a.kind"),
        (9, "tests.b.colour"),
        (10, "tests.b"),
    }
    messages = "\n".join(str(e) for e in caught.value.errors)
    assert "'nobody' is not a host of cluster 'pair'" in messages
    assert "unknown case kind 'telepathy'" in messages
    assert "listed twice" in messages


def test_a_suite_on_a_cluster_file_that_does_not_load_gets_that_files_problems(
    tmp_path: Path,
) -> None:
    folder = make_repo(tmp_path, "cluster: pair\ntests: [a]\n", {"a": {"run.sh": "true\n"}})
    (tmp_path / "clusters" / "pair.yaml").write_text("name: pair\nhosts:\n  - {nmae: x}\n")
    (tmp_path / "clusters" / "other.yaml").write_text("hosts: 3\n")
    with pytest.raises(DefinitionErrors) as caught:
        find_suite(folder)
    messages = [str(e) for e in caught.value.errors]
    assert any("cluster 'pair' does not load" in m for m in messages)
    assert any(
        "pair.yaml:3: hosts.0.nmae: unknown host key (did you mean 'name'?" in m for m in messages
    )
    assert not any("other.yaml" in m for m in messages), "a neighbour's problem is not this run's"


def test_repo_root_with_suite_name_and_case_check(tmp_path: Path) -> None:
    make_repo(tmp_path, "name: renamed\ncluster: pair\ntests: [a]\n", {"a": {"run.sh": "true\n"}})
    suite = find_suite(tmp_path, "renamed")  # by the name the file gives, not only the folder
    assert suite.name == "renamed"
    (problem,) = check_cases(suite, ["a", "zzz"])
    assert problem.key == "-t" and "no case 'zzz' (cases: a)" in problem.message
    with pytest.raises(DefinitionErrors, match="no suite 'other'"):
        find_suite(tmp_path, "other")
    assert load_repo(tmp_path).suites["renamed"].cluster.name == "pair"


def test_a_cases_check_and_nemesis_are_read_and_their_mistakes_named(tmp_path: Path) -> None:
    good = make_repo(
        tmp_path / "good",
        """\
cluster: pair
tests:
  - name: a
    check: register
    nemesis: {every: 500ms, faults: [partition-halves, kill etcd, slow-random 200ms], seed: 7}
""",
        {"a": {"run.sh": "true\n"}},
    )
    (case,) = find_suite(good).cases
    assert case.check == "register"
    assert case.nemesis is not None
    assert (case.nemesis.every, case.nemesis.seed) == (0.5, 7)
    assert case.nemesis.faults == ("partition-halves", "kill etcd", "slow-random 200ms")

    bad = make_repo(
        tmp_path / "bad",
        """\
cluster: pair
tests:
  - name: a
    check: queue
    nemesis:
      every: never
      faults:
        - partition-halves
        - pause
        - slow-random fast
      seed: seven
      when: always
""",
        {"a": {"run.sh": "true\n"}},
    )
    with pytest.raises(DefinitionErrors) as caught:
        find_suite(bad)
    found = {e.key: (e.line, e.message) for e in caught.value.errors}
    assert set(found) == {
        "tests.a.check",
        "tests.a.nemesis.every",
        "tests.a.nemesis.faults.1",
        "tests.a.nemesis.faults.2",
        "tests.a.nemesis.seed",
        "tests.a.nemesis.when",
    }
    assert found["tests.a.check"] == (4, "must be one of register, set, counter, not 'queue'")
    assert found["tests.a.nemesis.every"][0] == 6
    assert found["tests.a.nemesis.faults.1"] == (9, "pause needs the process's name: `pause NAME`")
    assert found["tests.a.nemesis.faults.2"][0] == 10
    assert found["tests.a.nemesis.seed"][0] == 11
    assert "unknown nemesis key" in found["tests.a.nemesis.when"][1]
