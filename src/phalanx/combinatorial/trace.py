"""The trace: JSON lines naming, for each walk segment, the walk and its actions.

Line kinds: a header (``"trace"``; ``planned_walks`` counts the walks generated,
pruned ones included; ``modules``, when given, the actions modules' sources), one line per walk per segment (``"walk_id"``,
``"segment"``, ``"branch"``, ``"actions"``), outcome lines for walks that failed,
were cancelled or were pruned, shrunk walks (``"shrunk_from"``), and at the end
of a run that finished a ``"totals"`` line (``walk_count`` walks ran,
``pruned_count`` were pruned, ``error_count`` failed, ``cancel_count`` cancelled). Segment lines are
written before the segment is dispatched, so a run that dies still leaves the
walks it was running on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from phalanx.combinatorial.plan import Plan
from phalanx.combinatorial.walk import Walk, action_from_json

FORMAT = "phalanx.combinatorial/trace"
VERSION = 1


class TraceWriter:
    def __init__(self, path: Path, header: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("w", encoding="utf-8")
        self._write_obj({"trace": FORMAT, "version": VERSION, **header})

    def _write_obj(self, obj: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._file.flush()

    def segment(
        self,
        plan: Plan,
        segment: int,
        branch: list[int],
        walks: Iterable[tuple[int, int]],
    ) -> None:
        """Lines for ``walks`` ((walk id, product index) pairs) in ``segment``."""
        seg = plan.segments[segment]
        space = plan.space
        frags = plan.action_json
        lead = ""
        if seg.serial is not None:
            lead = frags[seg.serial][branch[-1]] + ("," if seg.actions else "")
        steps = [(frags[p], space.weights[p], space.sizes[p]) for p in seg.actions]
        head = f',"segment":{segment},"branch":{json.dumps(branch)},"actions":[{lead}'
        lines = [
            '{"walk_id":'
            + str(walk_id)
            + head
            + ",".join(f[(pi // w) % s] for f, w, s in steps)
            + "]}\n"
            for walk_id, pi in walks
        ]
        self._file.write("".join(lines))
        self._file.flush()

    def outcome(self, walk_id: int, outcome: str, detail: str = "") -> None:
        self._write_obj({"walk_id": walk_id, "outcome": outcome, "detail": detail})

    def shrunk(self, walk_id: int, from_walk_id: int, walk: Walk, message: str) -> None:
        self._write_obj(
            {
                "walk_id": walk_id,
                "shrunk_from": from_walk_id,
                "segment": 0,
                "branch": [],
                "actions": walk.to_json(),
                "detail": message,
            }
        )

    def totals(self, **counts: int) -> None:
        """The last line of a run that ended: walks run, pruned, failed,
        cancelled (the header has only what was planned)."""
        self._write_obj({"totals": counts})

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TraceEntry:
    """One walk as a trace records it."""

    def __init__(self, walk_id: int) -> None:
        self.walk_id = walk_id
        self.segments: dict[int, list[dict[str, Any]]] = {}
        self.branch: list[int] = []
        self.outcome: str | None = None
        self.detail = ""
        self.shrunk_from: int | None = None
        # The run's initial state, encoded (None: the trace did not record one).
        self.initial: Any = None

    def walk(self) -> Walk:
        return Walk([action_from_json(a) for k in sorted(self.segments) for a in self.segments[k]])


def kept_modules(path: Path) -> dict[str, str]:
    """The actions modules' sources a trace's header keeps (none: empty)."""
    try:
        with path.open(encoding="utf-8") as f:
            header = json.loads(f.readline())
    except (OSError, ValueError):
        return {}
    kept = header.get("modules") if isinstance(header, dict) else None
    if not isinstance(kept, dict):
        return {}
    return {str(k): str(v) for k, v in kept.items()}


def read_entry(path: Path, walk_id: int) -> TraceEntry:
    """Walk ``walk_id`` of the trace at ``path``; LookupError if it is not there."""
    entry = TraceEntry(walk_id)
    found = False
    with path.open(encoding="utf-8") as f:
        first = f.readline()
        try:
            header = json.loads(first)
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("trace") != FORMAT:
            raise ValueError(f"{path} is not a phalanx walk trace")
        entry.initial = header.get("state")

        needle = f'"walk_id":{walk_id},'
        for line in f:
            # Cheap test first: a trace holds a line per walk per segment.
            if needle not in line:
                continue
            obj = json.loads(line)
            if obj.get("walk_id") != walk_id:
                continue
            if "actions" in obj:
                found = True
                entry.segments[int(obj["segment"])] = obj["actions"]
                entry.branch = obj.get("branch", entry.branch)
                if "shrunk_from" in obj:
                    entry.shrunk_from = obj["shrunk_from"]
                    entry.detail = obj.get("detail", "")
            elif "outcome" in obj:
                entry.outcome = obj["outcome"]
                entry.detail = obj.get("detail", "")
    if not found:
        raise LookupError(f"walk {walk_id} is not in {path}")
    return entry
