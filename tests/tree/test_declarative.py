"""Declarative tests: the event/action logic on its own, then whole tests as
programs, including a user's own module found by typename."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.kinds.declarative import counts, eventaction, events
from phalanx.kinds.declarative.events import ProcessExited, ProcessOutput
from phalanx.kinds.declarative.tokens import FailTokens, verdict
from tests.tree.helpers import EXAMPLE, make_tree, phalanx, reasons, results, statuses

HEADER = """
test-modules:
    test-object:
        config-section: test-object-config
        typename: 'ProcessTest'
    modules:
        -
            config-section: event-action-config
            typename: 'EventActionModule'
"""


@pytest.mark.parametrize(
    ("text", "seen", "met"),
    [
        (3, 3, True),
        (3, 4, False),
        (">2", 3, True),
        (">2", 2, False),
        ("<1", 0, True),
        ("<1", 1, False),
    ],
)
def test_counts(text: object, seen: int, met: bool) -> None:
    assert counts.parse(text).met(seen) is met


def test_a_bad_count_is_refused() -> None:
    with pytest.raises(ValueError, match="N, '>N' or '<N'"):
        counts.parse("lots")


def test_an_ordered_list_fires_only_when_seen_in_order() -> None:
    sets = eventaction.parse(
        [{"process-output": [{"match": "one"}, {"match": "two"}], "logger": "in order"}]
    )
    assert sets.feed(ProcessOutput("p", "two")) == []
    assert sets.unmet() and "still waiting for process-output matching 'one'" in sets.unmet()[0]
    assert sets.feed(ProcessOutput("p", "one")) == []
    assert sets.feed(ProcessOutput("p", "two")) == [eventaction.Action("logger", "in order")]
    assert sets.unmet() == []


def test_patterns_match_process_regex_and_exit_code() -> None:
    sets = eventaction.parse(
        [
            {"process-output": {"process": "a", "match": r"^x\d$", "count": 2}},
            {"process-exit": {"process": "a", "exit-code": 0}, "stop_test": None},
            {"test-start": None, "logger": "hi"},
        ]
    )
    assert sets.feed(events.TestStarted()) == [eventaction.Action("logger", "hi")]
    for line in ("x1", "x22", "y3"):
        sets.feed(ProcessOutput("a", line))
    sets.feed(ProcessOutput("b", "x4"))  # another process: not counted
    assert sets.unmet() == [
        "set 0: process-output of a matching '^x\\\\d$' expected exactly 2 times, seen 1",
        "set 1: process-exit of a with exit code 0 expected more than 0 times, seen 0",
    ]
    assert sets.feed(ProcessExited("a", 1)) == []
    assert sets.feed(ProcessExited("a", 0)) == [eventaction.Action("stop_test", None)]


def test_config_problems_point_at_their_key() -> None:
    with pytest.raises(eventaction.ConfigError) as caught:
        eventaction.parse([{"process-output": {"match": "("}}])
    assert caught.value.path == (0, "process-output", "match")
    with pytest.raises(eventaction.ConfigError, match="unknown key 'stop'"):
        eventaction.parse([{"test-start": None, "stop": None}])


def test_fail_tokens_decide_with_the_passed_mark() -> None:
    tokens = FailTokens()
    token = tokens.create("waiting for ready")
    assert verdict(True, tokens) == (False, ["waiting for ready"])
    tokens.remove(token)
    assert verdict(True, tokens) == (True, [])
    assert verdict(False, tokens) == (False, ["the test was not marked passed"])


def _declarative(tmp_path: Path, tests: dict[str, str]) -> None:
    make_tree(tmp_path, {name: (HEADER + body, None) for name, body in tests.items()})


def test_declarative_failures_say_why(tmp_path: Path) -> None:
    _declarative(
        tmp_path,
        {
            "too_few": """
test-object-config:
    processes:
        - {name: p, command: 'echo one; echo two'}
event-action-config:
    - process-output: {process: p, match: 'three'}
""",
            "hangs": """
test-object-config:
    reactor-timeout: 0.5
    processes:
        - {name: p, command: 'exec sleep 30'}
event-action-config:
    - process-exit: {process: p}
      stop_test:
""",
            "fails": """
test-object-config:
    processes:
        - {name: p, command: 'echo ERROR disk full; exec sleep 30'}
event-action-config:
    - process-output: {match: 'ERROR'}
      fail: 'the service reported an error'
""",
            "bad_exit": """
test-object-config:
    processes:
        - {name: p, command: 'exit 4'}
event-action-config:
    - test-start:
""",
        },
    )
    done = phalanx("tests", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    data = results(tmp_path)
    assert set(statuses(data).values()) == {"failed"}
    (run,) = (tmp_path / "phalanx-results").iterdir()
    out = {
        c["name"]: (run / c["stages"][0]["hosts"][0]["output"]).read_text() for c in data["cases"]
    }
    assert (
        "process-output of p matching 'three' expected more than 0 times, seen 0"
        in out["tests/too_few"]
    )
    assert "reactor timed out after 0.5s" in out["tests/hangs"]
    assert "FAILED: the service reported an error" in out["tests/fails"]
    assert "process p exited with 4, expected 0" in out["tests/bad_exit"]


def test_a_users_module_is_found_by_typename(tmp_path: Path) -> None:
    config = """
test-modules:
    test-object:
        config-section: test-object-config
        typename: 'ProcessTest'
    modules:
        -
            config-section: word-config
            typename: 'wordcheck.WordCheck'
test-object-config:
    processes:
        - {name: p, command: 'echo the quick brown fox'}
word-config:
    word: fox
"""
    module = '''
from phalanx.kinds.declarative.events import ProcessOutput


class WordCheck:
    """Passes the test once a process prints the configured word."""

    def __init__(self, config, test):
        self.word = config["word"]
        self.test = test
        self.token = test.create_fail_token(f"never saw {self.word!r}")
        test.subscribe(self.on_event)

    def on_event(self, event):
        if isinstance(event, ProcessOutput) and self.word in event.line.split():
            self.test.remove_fail_token(self.token)
            self.test.log(f"saw {self.word}")
'''
    tree = make_tree(tmp_path, {"words": (config, None)})
    (tree / "words" / "wordcheck.py").write_text(module)
    done = phalanx("tests", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[logger] saw fox" in done.stdout
    (tree / "words" / "test-config.yaml").write_text(config.replace("word: fox", "word: cat"))
    assert phalanx("tests", cwd=tmp_path).returncode == 1


def test_a_broken_module_config_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    folder = EXAMPLE / "declarative" / "counting"
    broken = tmp_path / "t"
    broken.mkdir()
    text = (folder / "test-config.yaml").read_text().replace("count: 3", "count: lots")
    (broken / "test-config.yaml").write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.host.declarative", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "count: lots" in t)
    assert f"test-config.yaml:{line}: event-action-config.1.process-output.count:" in done.stdout


def test_the_declarative_examples_pass(tmp_path: Path) -> None:
    done = phalanx(str(EXAMPLE), "-t", "declarative", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert statuses(results(tmp_path)) == {
        "tests/declarative/counting": "passed",
        "tests/declarative/service_client": "passed",
    }
    assert reasons(results(tmp_path))["tests/declarative/counting"] is None
    assert "[logger] ticks seen in order" in done.stdout
    assert "[client] hello from the client" in done.stdout


def test_a_broken_event_action_config_skips_that_test_and_the_rest_runs(tmp_path: Path) -> None:
    text = (EXAMPLE / "declarative" / "counting" / "test-config.yaml").read_text()
    broken = text.replace("count: 3", "count: lots")
    tree = make_tree(
        tmp_path,
        {
            "ok": ("testinfo: {summary: fine}\n", "#!/bin/sh\ntouch ran\n"),
            "counting": (broken, None),
            "no_section": (
                "test-modules:\n    modules:\n        - typename: EventActionModule\n"
                "          config-section: nowhere\n",
                None,
            ),
        },
    )
    line = next(n for n, t in enumerate(broken.splitlines(), 1) if "count: lots" in t)
    counting = f"counting/test-config.yaml:{line}: event-action-config.1.process-output.count:"
    no_section = (
        "no_section/test-config.yaml:4: test-modules.modules.0.config-section: no section 'nowhere'"
    )
    listed = phalanx("tests", "--list", "-v", cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert counting in listed.stderr and no_section in listed.stderr
    assert "S tests/counting  (skip: broken: tests/" + counting in listed.stdout
    assert "R tests/ok" in listed.stdout.splitlines()
    done = phalanx("tests", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 tests cannot be read and will be skipped" in done.stderr
    data = results(tmp_path)
    assert statuses(data) == {
        "tests/counting": "skipped",
        "tests/no_section": "skipped",
        "tests/ok": "passed",
    }
    assert counting in (reasons(data)["tests/counting"] or "")
    assert no_section in (reasons(data)["tests/no_section"] or "")
    assert (tree.parent / "ran").exists() or (tmp_path / "ran").exists()
