"""What goes between the coordinating process and a worker: one chunk of
walks out, one result back, each a frozen dataclass here and JSON text on
the way (so no walk, state object or pickle crosses, and a worker of another
version fails to read a task instead of misreading it).

A segment chunk names its walks by id range (or lists them, with the states
they carry from the segment before); a walks chunk lists whole walks to run
(shrink candidates). Every chunk of one run shares its `RunHeader`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_COMPACT = (",", ":")


@dataclass(frozen=True)
class RunHeader:
    plan: dict[str, Any]  # Plan.to_wire()
    log_level: int
    capture: bool  # whether the worker returns the log records of the chunk
    origin: tuple[str, int]  # the coordinating process (host, pid)
    run: str  # the run id log records are attributed to


@dataclass(frozen=True)
class SegmentChunk:
    """Walks through one segment. Either `span` (ids lo..hi, starting from
    `initial`) or `ids` with the `states` they carry."""

    header: RunHeader
    segment: int
    prune: bool  # check should_cancel before running (the first segment)
    return_states: bool
    update: Any = None  # the serial action's update (encoded), applied to each walk
    initial: str = "null"  # the run's initial state (JSON)
    span: tuple[int, int] | None = None
    ids: list[int] | None = None
    states: list[Any] | None = None  # encoded, one per id
    pidx: list[int] | None = None  # product index per walk, where a strategy picked


@dataclass(frozen=True)
class WalksChunk:
    """Whole walks, each a list of [position, option] steps."""

    header: RunHeader
    walks: list[list[list[int]]]
    initial: str = "null"


Chunk = SegmentChunk | WalksChunk


@dataclass(frozen=True)
class WalkFailure:
    walk_id: int
    error_type: str  # module.qualname of the exception
    pos: int  # the action's position in the walk; -1: before any action
    message: str
    traceback: str | None = None
    place: str = ""  # where it was raised: `file.py:function:line` (failure.place_of)


@dataclass(frozen=True)
class SegmentResult:
    segments: int  # walk segments run
    elapsed: float  # seconds the worker spent on them
    cancelled: list[int]
    failed: list[WalkFailure]
    pruned: list[int]
    state_ids: list[int] | None = None  # with return_states: the walks ...
    states: list[Any] | None = None  # ... and their encoded states (None: not JSON-able)


@dataclass(frozen=True)
class WalkOutcome:
    outcome: str  # passed | cancelled | failed
    error_type: str | None = None
    action_class: str | None = None  # the action that raised
    message: str | None = None
    place: str = ""  # where it was raised, as WalkFailure.place


@dataclass(frozen=True)
class WorkerRecord:
    """A log record a worker captured, for the coordinating process to emit."""

    levelno: int
    name: str  # the logger's
    message: str  # formatted
    created: float
    walk_id: int | None
    exc_text: str | None = None


@dataclass(frozen=True)
class ChunkResult:
    worker: str  # host:pid
    segment: SegmentResult | None = None
    outcomes: list[WalkOutcome] | None = None  # of a WalksChunk, in its order
    fatal: str | None = None  # the worker could not set the chunk up
    logs: list[WorkerRecord] | None = None  # captured records (logs.capture_end)
    dropped_logs: int = 0


def _fields(obj: Any) -> Any:
    # Frozen dataclasses without slots keep their fields in __dict__: the
    # cheapest way to JSON, which matters at a chunk per few milliseconds.
    return vars(obj)


def encode(message: Chunk | ChunkResult) -> str:
    kind = {SegmentChunk: "segment", WalksChunk: "walks"}.get(type(message))
    body = _fields(message) if kind is None else {"mode": kind, **_fields(message)}
    return json.dumps(body, separators=_COMPACT, default=_fields)


def decode_chunk(text: str) -> Chunk:
    """Raises TypeError/KeyError/ValueError on a chunk this version cannot read."""
    raw = json.loads(text)
    mode = raw.pop("mode")
    given = raw.pop("header")
    header = RunHeader(**{**given, "origin": tuple(given["origin"])})
    if mode == "segment":
        span = raw.pop("span", None)
        return SegmentChunk(header=header, span=tuple(span) if span else None, **raw)
    if mode == "walks":
        return WalksChunk(header=header, **raw)
    raise ValueError(f"unknown chunk mode {mode!r}")


def decode_result(text: str) -> ChunkResult:
    raw = json.loads(text)
    segment = raw.pop("segment", None)
    if segment is not None:
        failed = [WalkFailure(**f) for f in segment.pop("failed")]
        raw["segment"] = SegmentResult(failed=failed, **segment)
    outcomes = raw.pop("outcomes", None)
    if outcomes is not None:
        raw["outcomes"] = [WalkOutcome(**o) for o in outcomes]
    records = raw.pop("logs", None)
    if records is not None:
        raw["logs"] = [WorkerRecord(**r) for r in records]
    return ChunkResult(**raw)
