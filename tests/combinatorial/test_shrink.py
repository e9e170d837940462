"""Shrinking failures to minimal walks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from phalanx.combinatorial import Walk, run_tests
from phalanx.combinatorial.cli import replay as cli_replay
from phalanx.combinatorial.shrink import Candidate, shrink
from tests.combinatorial import actions as a


def test_shrinking_finds_the_planted_minimal_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="phalanx.combinatorial")
    results = run_tests(
        [a.P0, a.P1, a.P2, a.P3], state={}, shrink=True, log_dir=tmp_path, verbose=0
    )

    assert results.error_count == 4 * 1 * 4 * 2  # P1 == 3 and P3 in (2, 3)
    (shrunk,) = results.shrunk  # one distinct failure
    assert shrunk.reproduced
    assert shrunk.walk == Walk([a.P1(3), a.P3(2)])
    assert shrunk.from_walk_id == results.failed_tests[0]
    assert shrunk.original_length == 4
    assert "planted: P1=3, P3=2" in shrunk.message
    assert any("shrunk" in r.getMessage() and "P3(2)" in r.getMessage() for r in caplog.records)

    # The minimal walk is in the trace, replayable like any other.
    assert results.logs is not None and shrunk.trace_id is not None
    assert cli_replay(results.logs.trace, shrunk.trace_id, "{}", step=False) == 1


def test_no_shrinking_unless_asked() -> None:
    results = run_tests([a.P1, a.P3], state={}, verbose=0)
    assert results.error_count == 2
    assert results.shrunk == []


def test_shrink_prefers_fewer_actions_then_smaller_options() -> None:
    # Fails when it holds (position 2, option >= 1), or both (0, 3) and (1, any).
    def fails(cand: Candidate) -> bool:
        steps = dict(cand)
        return steps.get(2, -1) >= 1 or (steps.get(0) == 3 and 1 in steps)

    def evaluate(cands: Sequence[Candidate]) -> list[bool]:
        return [fails(c) for c in cands]

    best, tries = shrink(((0, 3), (1, 2), (2, 4)), evaluate)
    assert best == ((2, 1),)
    assert tries > 0


# Two assertions in one action: a shrink that drops the Restart makes the
# first one fail instead of the second, same type, same action, not the same
# failure (issue 23, item 11).
TWO_ASSERTS = """\
from phalanx.combinatorial import Action, SerialAction


class Put(Action):
    OPTIONS = ["a", "b"]

    def run(self, key, state):
        state["store"][key] = 1


class Restart(SerialAction):
    OPTIONS = ["clean"]

    def run(self, mode, state):
        return {"restarts": state["restarts"] + 1}


class Check(Action):
    OPTIONS = ["all"]

    def run(self, _, state):
        assert state["restarts"] == 1, "restarts"
        assert "b" in state["store"], "b not in store"
"""


def test_a_shrunk_walk_fails_at_the_same_place_not_just_with_the_same_type(
    tmp_path: Path,
) -> None:
    import json
    import subprocess
    import sys

    (tmp_path / "repo" / "clusters").mkdir(parents=True)
    (tmp_path / "repo" / "clusters" / "one.yaml").write_text("name: one\nhosts: [{name: h1.t}]\n")
    suite = tmp_path / "repo" / "test-suites" / "kv"
    suite.mkdir(parents=True)
    (suite / "acts.py").write_text(TWO_ASSERTS)
    (suite / "suite.yaml").write_text(
        "name: kv\ncluster: one\ntests:\n  - name: store\n    kind: walks\n    module: acts\n"
        "    order: [Put, Restart, Check]\n    state: {store: {}, restarts: 0}\n"
        "    shrink: true\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(suite), "--plain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run_dir,) = (tmp_path / "phalanx-results").iterdir()
    (case,) = json.loads((run_dir / "results.json").read_text())["cases"]
    data = case["stages"][0]["hosts"][0]["data"]
    assert data["error_count"] == 1  # Put(a): "b" is never put
    (shrunk,) = data["shrunk"]
    # Without the Restart, `restarts == 1` would fail first: not this failure.
    assert shrunk["walk"] == ["Restart('clean')", "Check('all')"]
    assert shrunk["message"] == "b not in store"
