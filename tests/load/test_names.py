"""Suite, case and cluster names become one segment of the service's links
and forms (`/suites/NAME/run`) and of run folders: a name that is not safe as
one path segment is a definition error with its file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from phalanx.load.cluster import load_cluster
from phalanx.load.errors import DefinitionErrors
from phalanx.load.repo import find_suite
from tests.load.test_suite import make_repo

HOSTILE = "../admin/users/view1/remove?"


@pytest.mark.parametrize("name", [HOSTILE, "a/b", "..", ".", "x#y", "50%", "tab\there"])
def test_a_suite_named_like_a_path_is_refused_with_file_line_and_key(
    tmp_path: Path, name: str
) -> None:
    folder = make_repo(
        tmp_path,
        f"name: {name!r}\ncluster: pair\ntests: [a]\n".replace("'", '"'),
        {"a": {"run.sh": "true\n"}},
    )
    with pytest.raises(DefinitionErrors) as caught:
        find_suite(folder)
    (error,) = caught.value.errors
    assert (error.file, error.line, error.key) == (folder / "suite.yaml", 1, "name")
    assert "one path segment" in error.message


def test_a_case_named_like_a_path_is_refused(tmp_path: Path) -> None:
    folder = make_repo(
        tmp_path,
        "cluster: pair\ntests:\n  - a\n  - {name: '../../x?'}\n",
        {"a": {"run.sh": "true\n"}},
    )
    with pytest.raises(DefinitionErrors) as caught:
        find_suite(folder)
    (error,) = caught.value.errors
    assert (error.line, error.key) == (4, "tests.1")
    assert "one path segment" in error.message


def test_a_cluster_named_like_a_path_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("hosts: [{name: h1.t.test}]\nname: a/../b\n")
    with pytest.raises(DefinitionErrors) as caught:
        load_cluster(file)
    (error,) = caught.value.errors
    assert (error.file, error.line, error.key) == (file, 2, "name")
    assert "one path segment" in error.message


def test_ordinary_names_load(tmp_path: Path) -> None:
    folder = make_repo(
        tmp_path,
        "name: Nightly run-2 (x86_64) v1.2\ncluster: pair\ntests: [a.b_c]\n",
        {"a.b_c": {"run.sh": "true\n"}},
    )
    suite = find_suite(folder)
    assert suite.name == "Nightly run-2 (x86_64) v1.2"
    assert [c.name for c in suite.cases] == ["a.b_c"]
