"""results.json: the whole run, for tools and for `read_json` to load back.

Timestamps are ISO 8601 with microseconds and a UTC offset, always; a
`duration` in seconds is added for readers and dropped again on reading.

A host's `output` is the path of its whole output in the run folder, the
bytes the program wrote; `output_tail` is its last 64 KiB as text (decoded
with U+FFFD for what is not UTF-8) and `output_size` its length in bytes,
both read from the file when the report is written, and dropped again on
reading (the file has it all).

`vms` is what the run folder keeps of each host that was a virtual machine
(the qemu provider's `hosts/<host>/vm.json`: accel, RAM, its boot timings
from QEMU's start to its agent's start and connection, live migrations, how
it ended), with the paths of its console log and QMP events and those
events counted by name; read when the report is written, dropped on reading.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from phalanx.codec import decode, encode, encode_fields
from phalanx.events import CaseRecord, RunRecord, StageRecord
from phalanx.model import CaseResult, HostResult, RunResult, StageResult, seconds
from phalanx.report.files import write_atomic

FORMAT = 1
_DERIVED = ("format", "duration", "output_tail", "output_size", "vms")
HOSTS = "hosts"  # the run folder's host folders, where a VM's files are
OUTPUT_TAIL = 64 * 1024


def _duration(started: datetime | None, ended: datetime | None) -> float | None:
    if started is None or ended is None:
        return None
    return round(seconds(started, ended), 6)


def output_tail(path: Path, limit: int = OUTPUT_TAIL) -> tuple[str, int] | None:
    """The last `limit` bytes of a file as text, and the file's size; None
    if it cannot be read."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return None
    if size > limit:  # begin at a character, not inside one
        data = data[next((i for i in range(min(4, len(data))) if data[i] & 0xC0 != 0x80), 0) :]
    return data.decode("utf-8", errors="replace"), size


def _host(h: HostResult, run_dir: Path | None, tail: int) -> dict[str, Any]:
    found = output_tail(run_dir / h.output, tail) if run_dir is not None and h.output else None
    return {
        **encode(h),
        "duration": _duration(h.started_at, h.ended_at),
        "output_tail": found[0] if found else None,
        "output_size": found[1] if found else None,
    }


def vms(hosts: Iterable[str], run_dir: Path | None) -> dict[str, Any]:
    """Each VM's record (`vm.json`) and files, by host; {} for a run with
    no VM (or no run folder)."""
    found: dict[str, Any] = {}
    if run_dir is None:
        return found
    for host in hosts:
        folder = Path(HOSTS) / host
        try:
            record = json.loads((run_dir / folder / "vm.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict):
            continue
        events = folder / "qmp-events.jsonl"
        found[host] = {
            **encode(record),
            "console": (folder / "console.log").as_posix(),
            "qmp_events": {"path": events.as_posix(), "counts": _event_counts(run_dir / events)},
        }
    return found


def _event_counts(path: Path) -> dict[str, int]:
    """QMP events by name, in the order each first came."""
    counts: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        try:
            name = json.loads(line)["event"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash
        counts[str(name)] = counts.get(str(name), 0) + 1
    return counts


def _stage(s: StageRecord | StageResult, run_dir: Path | None, tail: int) -> dict[str, Any]:
    return {
        **encode_fields(s, leaving_out=("hosts",)),
        "duration": _duration(s.started_at, s.ended_at),
        "hosts": [_host(h, run_dir, tail) for h in s.hosts],
    }


def _case(c: CaseRecord | CaseResult, run_dir: Path | None, tail: int) -> dict[str, Any]:
    return {
        **encode_fields(c, leaving_out=("stages",)),
        "duration": _duration(c.started_at, c.ended_at),
        "stages": [_stage(s, run_dir, tail) for s in c.stages],
    }


def to_json(
    result: RunRecord | RunResult, run_dir: Path | None = None, tail: int = OUTPUT_TAIL
) -> dict[str, Any]:
    """The run's document: every field of its record (`phalanx.codec`),
    with what is derived from them and from the run folder (`run_dir`,
    where the hosts' output files are; None: no tails, no VMs). `tail`:
    how much of each output's end to include (a page shows less)."""
    return {
        "format": FORMAT,
        **encode_fields(result, leaving_out=("stages", "cases")),
        "duration": _duration(result.started_at, result.ended_at),
        "stages": [_stage(s, run_dir, tail) for s in result.stages],
        "cases": [_case(c, run_dir, tail) for c in result.cases],
        "vms": vms(result.hosts, run_dir),
    }


def write_json(result: RunRecord | RunResult, path: Path, run_dir: Path | None = None) -> None:
    dump_json(to_json(result, run_dir), path)


def dump_json(data: dict[str, Any], path: Path) -> None:
    """A report made by `to_json`, written as results.json."""
    # orjson: the stdlib's C encoder does not indent, and its pure-Python one
    # takes ~0.1 s for a run of 500 tests.
    write_atomic(path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


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
    return decode(RunResult, _strip_derived(data))


def read_json(path: Path) -> RunResult:
    return from_json(json.loads(path.read_text(encoding="utf-8")))
