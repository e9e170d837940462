"""The runs a results folder holds (`phalanx-results/<run-id>/`), read back
from each one's results.json: for `phalanx results list|show|open` and for
`--last-failed` / `--failed-first`.

Only the few fields a listing needs are read, with the stdlib's json: a
listing of a hundred runs must not pay for validating every host's output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx import layout
from phalanx.report.outcomes import RED

RED_VALUES = frozenset(s.value for s in RED)


@dataclass(frozen=True)
class CaseLine:
    name: str
    status: str
    reason: str | None


@dataclass(frozen=True)
class PastRun:
    """One run folder. `problem` says why its results.json could not be
    read (a run still going, or killed before it wrote one)."""

    folder: Path
    run_id: str
    suite: str | None = None
    status: str | None = None
    reason: str | None = None
    started_at: str | None = None
    duration: float | None = None
    cases: tuple[CaseLine, ...] = ()
    problem: str | None = None

    @property
    def failed(self) -> frozenset[str]:
        return frozenset(c.name for c in self.cases if c.status in RED_VALUES)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for case in self.cases:
            found[case.status] = found.get(case.status, 0) + 1
        return found


class RunNotFound(LookupError):
    pass


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def read_run(folder: Path) -> PastRun:
    path = folder / layout.RESULTS_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return PastRun(folder, folder.name, problem="no results.json (still running, or killed)")
    except (OSError, ValueError) as exc:
        return PastRun(folder, folder.name, problem=f"{layout.RESULTS_JSON} unreadable: {exc}")
    if not isinstance(data, dict):
        return PastRun(folder, folder.name, problem=f"{layout.RESULTS_JSON} is not a JSON object")
    cases = tuple(
        CaseLine(str(c.get("name", "?")), str(c.get("status", "?")), _text(c.get("reason")))
        for c in data.get("cases") or []
        if isinstance(c, dict)
    )
    took = data.get("duration")
    return PastRun(
        folder,
        _text(data.get("run_id")) or folder.name,
        suite=_text(data.get("suite")),
        status=_text(data.get("status")),
        reason=_text(data.get("reason")),
        started_at=_text(data.get("started_at")),
        duration=float(took) if isinstance(took, int | float) else None,
        cases=cases,
    )


def run_folders(results: Path) -> list[Path]:
    """The run folders, oldest first: a run id begins with its start time.
    A folder counts when it holds a results.json, or what a run writes
    before its end (a run going on, or killed)."""
    if not results.is_dir():
        return []
    return sorted(
        (p for p in results.iterdir() if p.is_dir() and _is_run(p)),
        key=lambda p: p.name,
    )


def _is_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in (layout.RESULTS_JSON, *RUN_PARTS))


# What a run folder holds before results.json: its hosts' folders and output.
RUN_PARTS = ("hosts", "suite", "cases")


def past_runs(results: Path) -> list[PastRun]:
    return [read_run(folder) for folder in run_folders(results)]


def find_run(results: Path, spec: str) -> PastRun:
    """A run by id, by the start of its id, by path, or `latest`."""
    given = Path(spec)
    if given.is_dir() and _is_run(given):
        return read_run(given)
    folders = run_folders(results)
    if spec in ("latest", "last"):
        if not folders:
            raise RunNotFound(f"{results}: no runs here")
        return read_run(folders[-1])
    exact = [f for f in folders if f.name == spec]
    found = exact or [f for f in folders if f.name.startswith(spec)]
    if len(found) == 1:
        return read_run(found[0])
    if not found:
        raise RunNotFound(
            f"{results}: no run {spec!r} (`phalanx results list --results {results}` lists them)"
        )
    names = ", ".join(f.name for f in found[:5]) + (", …" if len(found) > 5 else "")
    raise RunNotFound(f"{results}: {spec!r} names {len(found)} runs ({names}); give more of it")


def previous_run(results: Path, suite: str) -> PastRun | None:
    """The latest run of `suite` that wrote its results (a cancelled one
    too: what it did not get to is `cancelled`, so it runs again)."""
    for folder in reversed(run_folders(results)):
        past = read_run(folder)
        if past.problem is None and past.suite == suite:
            return past
    return None
