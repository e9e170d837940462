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
