"""Line-aware YAML: every problem can name the line of its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from phalanx.load.errors import DefinitionErrors
from phalanx.load.yamlsrc import parse

DOC = """\
name: demo
tests:
  - greet
  - name: fetch
    timeout: 30
tags:
  greeting: hi
"""


def test_data_is_plain_and_lines_point_at_keys() -> None:
    src = parse(DOC, Path("suite.yaml"))
    assert src.data["tests"][1] == {"name": "fetch", "timeout": 30}
    assert src.line("name") == 1
    assert src.line("tests", 0) == 3
    assert src.line("tests", 1, "timeout") == 5
    assert src.line("tags", "greeting") == 7


def test_an_unknown_path_falls_back_to_its_nearest_parent() -> None:
    src = parse(DOC, Path("suite.yaml"))
    assert src.line("tests", 1, "nothing") == 4
    assert src.line("absent") == 1


def test_a_syntax_error_names_file_and_line() -> None:
    with pytest.raises(DefinitionErrors) as caught:
        parse("name: x\ntests: [a\nother: 1\n", Path("s.yaml"))
    (error,) = caught.value.errors
    assert error.file == Path("s.yaml")
    assert error.line == 3
    assert "YAML syntax error" in error.message


def test_a_key_given_twice_is_an_error_not_a_silent_override() -> None:
    with pytest.raises(DefinitionErrors) as caught:
        parse("name: a\ntimeout: 1\nname: b\n", Path("s.yaml"))
    (error,) = caught.value.errors
    assert (error.line, error.key) == (3, "name")
    assert "first on line 1" in error.message
