"""Traces, and replaying one walk from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phalanx.combinatorial import Walk, replay_walk, replay_walk_by_id, run_tests
from phalanx.combinatorial.cli import replay as cli_replay
from tests.combinatorial import actions as a


def test_replay_walk_runs_serial_actions_inline() -> None:
    walk = Walk([a.Singleton1(1), a.Singleton2(2), a.SerialSingleton0(0), a.Singleton3(3)])
    state = replay_walk(walk, state={})
    assert state["inner"] == [1, 2, 0, 3]


def test_walk_of_one_action() -> None:
    state: dict[str, list[int]] = {}
    assert Walk(a.Append5(4)).execute(state) is False
    assert state == {"inner": [4]}


def test_replay_by_id_replays_that_walk_only(tmp_path: Path) -> None:
    results = run_tests([a.Append5, a.Append2], state={}, gather_states=True, log_dir=tmp_path)
    assert results.walk_count == 10
    assert results.logs is not None

    replayed = replay_walk_by_id(results.logs, 5, state={})

    assert replayed == results.states_by_id[5]
    assert len(replayed["inner"]) == 2  # one walk, not the file strung together


def test_replay_by_id_matches_the_run_across_serial_segments(tmp_path: Path) -> None:
    order = [a.Append5, a.SerialAppend5, a.Append3, a.SerialAppend2]
    results = run_tests(order, state={}, gather_states=True, log_dir=tmp_path)
    assert results.logs is not None

    for walk_id in (0, 37, 91, results.walk_count - 1):
        replayed = replay_walk_by_id(results.logs.trace, walk_id, state={})
        assert replayed == results.states_by_id[walk_id], walk_id


def test_trace_is_written_while_the_run_goes_on(tmp_path: Path) -> None:
    # The serial action runs between segments and counts the segment-0 lines
    # already on disk; every walk must see all of them.
    order = [a.Append5, a.Append3, a.SerialReadsTrace, a.Append2]
    results = run_tests(
        order, state={"log_dir": str(tmp_path)}, gather_states=True, log_dir=tmp_path
    )

    assert results.walk_count == 30
    assert {s["seen"] for s in results.states} == {15 * 1 * 2}  # 5 x 3 walks, x 2 (Append2)


def test_trace_records_outcomes(tmp_path: Path) -> None:
    results = run_tests([a.Append3, a.AlwaysFails], state={}, log_dir=tmp_path, verbose=0)
    assert results.logs is not None
    lines = [json.loads(line) for line in results.logs.trace.read_text().splitlines()]

    assert lines[0]["trace"] == "phalanx.combinatorial/trace"
    failed = {line["walk_id"] for line in lines if line.get("outcome") == "failed"}
    assert failed == {0, 1, 2}


def test_cli_replay_prints_the_walk_and_its_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = run_tests([a.Append5, a.Append2], state={}, log_dir=tmp_path, verbose=0)
    assert results.logs is not None
    trace = results.logs.trace

    assert cli_replay(trace, 5, '{"inner": []}', step=False) == 0
    out = capsys.readouterr().out
    assert "Append5(2)" in out and "Append2(1)" in out
    assert '"inner":[2,1]' in out
    assert "passed" in out


def test_cli_replay_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = run_tests([a.Append2, a.AlwaysFails], state={}, log_dir=tmp_path, verbose=0)
    assert results.logs is not None
    trace = results.logs.trace

    assert cli_replay(trace, 1, "{}", step=False) == 1
    assert "always fails" in capsys.readouterr().err
    assert cli_replay(trace, 99, None, step=False) == 2
    assert cli_replay(trace, 1, "{not json", step=False) == 2
    assert cli_replay(tmp_path / "missing.jsonl", 1, None, step=False) == 2


def test_cli_replay_step_waits_before_each_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = run_tests([a.Append5, a.Append2], state={}, log_dir=tmp_path, verbose=0)
    assert results.logs is not None
    prompts: list[str] = []
    answers = iter(["", "q"])

    def fake_input(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("builtins.input", fake_input)
    assert cli_replay(results.logs.trace, 5, "{}", step=True) == 1
    assert [p.split(":")[0] for p in prompts] == ["step 1/2", "step 2/2"]
    assert "stopped" in capsys.readouterr().out


def test_walk_plus_equals_actions() -> None:
    w = Walk([a.Append5(1)])
    w += [a.Append2(0)]
    w += Walk([a.Singleton3(3)])
    assert list(w) == [a.Append5(1), a.Append2(0), a.Singleton3(3)]
    with pytest.raises(TypeError, match="Action instances"):
        w += [1]  # type: ignore[list-item]
