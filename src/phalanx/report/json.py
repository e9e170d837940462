"""results.json: the whole run, for tools and for `read_json` to load back.

Timestamps are ISO 8601 with microseconds and a UTC offset, always; a
`duration` in seconds is added for readers and dropped again on reading.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from phalanx.model import CaseResult, HostResult, RunResult, StageResult, seconds
from phalanx.report.files import write_atomic

FORMAT = 1
_DERIVED = ("format", "duration")


def iso(moment: datetime | None) -> str | None:
    """`2024-05-01T12:00:00.000000+00:00`. A naive time is taken as UTC: the
    engine stamps in UTC, and a report must never guess the local zone."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="microseconds")


def _duration(started: datetime | None, ended: datetime | None) -> float | None:
    if started is None or ended is None:
        return None
    return round(seconds(started, ended), 6)


def _host(h: HostResult) -> dict[str, Any]:
    return {
        "host": h.host,
        "status": h.status.value,
        "exit_code": h.exit_code,
        "signal": h.signal,
        "started_at": iso(h.started_at),
        "ended_at": iso(h.ended_at),
        "duration": _duration(h.started_at, h.ended_at),
        "output": h.output,
        "reason": h.reason,
        "logs": list(h.logs),
        "data": jsonable(h.data),
    }


def jsonable(value: Any) -> Any:
    """A kind's data as JSON types. It is whatever the test produced: never
    let it break the report (what JSON cannot hold is written as its repr)."""
    if value is None or isinstance(value, str | bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)  # orjson's range
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return repr(value)


def _stage(s: StageResult) -> dict[str, Any]:
    return {
        "name": s.name,
        "status": s.status.value,
        "started_at": iso(s.started_at),
        "ended_at": iso(s.ended_at),
        "duration": _duration(s.started_at, s.ended_at),
        "hosts": [_host(h) for h in s.hosts],
    }


def _case(c: CaseResult) -> dict[str, Any]:
    return {
        "name": c.name,
        "status": c.status.value,
        "reason": c.reason,
        "started_at": iso(c.started_at),
        "ended_at": iso(c.ended_at),
        "duration": _duration(c.started_at, c.ended_at),
        "stages": [_stage(s) for s in c.stages],
    }


def to_json(result: RunResult) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "run_id": result.run_id,
        "suite": result.suite,
        "status": result.status.value,
        "reason": result.reason,
        "cluster": result.cluster,
        "hosts": list(result.hosts),
        "started_at": iso(result.started_at),
        "ended_at": iso(result.ended_at),
        "duration": _duration(result.started_at, result.ended_at),
        "stages": [_stage(s) for s in result.stages],
        "cases": [_case(c) for c in result.cases],
    }


def write_json(result: RunResult, path: Path) -> None:
    # orjson: the stdlib's C encoder does not indent, and its pure-Python one
    # takes ~0.1 s for a run of 500 tests.
    write_atomic(path, orjson.dumps(to_json(result), option=orjson.OPT_INDENT_2) + b"\n")


def _strip_derived(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (v if k == "data" else _strip_derived(v))
            for k, v in value.items()
            if k not in _DERIVED
        }
    if isinstance(value, list):
        return [_strip_derived(v) for v in value]
    return value


def from_json(data: dict[str, Any]) -> RunResult:
    """A results.json read back, checked: it may come from anywhere."""
    from pydantic import TypeAdapter  # only readers pay for pydantic

    return TypeAdapter(RunResult).validate_python(_strip_derived(data))


def read_json(path: Path) -> RunResult:
    return from_json(json.loads(path.read_text(encoding="utf-8")))
