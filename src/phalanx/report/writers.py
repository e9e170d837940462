"""Every report of a finished run, written together: results.json, JUnit XML
and TAP, each in the run folder under its usual name or where it was asked for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phalanx import layout
from phalanx.model import RunResult
from phalanx.report.json import write_json
from phalanx.report.junit import write_junit
from phalanx.report.tap import write_tap


@dataclass(frozen=True)
class ReportPaths:
    """Where reports go; None: the run folder's usual name."""

    json: Path | None = None
    junit: Path | None = None
    tap: Path | None = None


def write_reports(result: RunResult, run_dir: Path, paths: ReportPaths | None = None) -> None:
    paths = paths or ReportPaths()
    write_json(result, paths.json or run_dir / layout.RESULTS_JSON, run_dir)
    write_junit(result, run_dir, paths.junit or run_dir / layout.JUNIT_XML)
    write_tap(result, paths.tap or run_dir / layout.RESULTS_TAP)
