"""The worker protocol: chunks and results are frozen dataclasses, JSON on
the way, and come back as what was sent."""

from __future__ import annotations

import json

from phalanx.combinatorial.plan import Plan
from phalanx.combinatorial.protocol import (
    ChunkResult,
    RunHeader,
    SegmentChunk,
    SegmentResult,
    WalkFailure,
    WalkOutcome,
    WalksChunk,
    WorkerRecord,
    decode_chunk,
    decode_result,
    encode,
)
from phalanx.combinatorial.worker import origin, run_chunk
from tests.combinatorial.actions import AlwaysFails, NeedsNoState

HEADER = RunHeader(
    plan={"actions": ["m:A"], "fingerprint": "f"},
    log_level=20,
    capture=True,
    origin=("host", 42),
    run="run-1",
)


def test_chunks_come_back_as_sent() -> None:
    span = SegmentChunk(HEADER, segment=0, prune=True, return_states=True, span=(5, 9))
    listed = SegmentChunk(
        HEADER,
        segment=2,
        prune=False,
        return_states=False,
        update='{"k":1}',
        ids=[3, 8],
        states=['{"a":1}', "null"],
        pidx=[30, 80],
    )
    walks = WalksChunk(HEADER, walks=[[[0, 1], [2, 0]]], initial='{"seen":[]}')
    for chunk in (span, listed, walks):
        assert decode_chunk(encode(chunk)) == chunk


def test_results_come_back_as_sent() -> None:
    segment = ChunkResult(
        worker="h:1",
        segment=SegmentResult(
            segments=3,
            elapsed=0.5,
            cancelled=[1],
            failed=[WalkFailure(2, "builtins.ValueError", 1, "boom", "Traceback ...")],
            pruned=[4],
            state_ids=[1, 2],
            states=[None, '{"a":1}'],
        ),
        logs=[WorkerRecord(20, "phalanx.combinatorial", "hi", 1.5, 2)],
        dropped_logs=1,
    )
    outcomes = ChunkResult(
        worker="h:1",
        outcomes=[WalkOutcome("passed"), WalkOutcome("failed", "builtins.KeyError", "m:A", "k")],
    )
    fatal = ChunkResult(worker="h:1", fatal="cannot import m")
    for result in (segment, outcomes, fatal):
        assert decode_result(encode(result)) == result


def test_a_chunk_from_another_version_is_a_fatal_result_saying_why() -> None:
    plan = Plan.build([NeedsNoState, AlwaysFails])
    header = RunHeader(plan.to_wire(), 20, False, origin(), "r")
    good = json.loads(encode(SegmentChunk(header, segment=0, prune=False, return_states=False)))
    result = decode_result(run_chunk(json.dumps({**good, "colour": "red"})))
    assert result.segment is None
    assert result.fatal is not None and "cannot read the chunk" in result.fatal
    assert "colour" in result.fatal


def test_a_worker_runs_a_segment_chunk_into_typed_failures() -> None:
    plan = Plan.build([NeedsNoState, AlwaysFails])
    header = RunHeader(plan.to_wire(), 20, False, origin(), "r")
    chunk = SegmentChunk(header, segment=0, prune=False, return_states=False, span=(0, 2))
    result = decode_result(run_chunk(encode(chunk)))
    assert result.segment is not None and result.segment.segments == 2
    (first, second) = result.segment.failed
    assert (first.walk_id, first.pos, first.message) == (0, 1, "always fails (x)")
    assert first.error_type == "builtins.ValueError" and first.traceback
    assert second.walk_id == 1
