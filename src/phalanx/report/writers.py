"""Every report of a finished run, written together: results.json, JUnit XML,
TAP and report.html, each in the run folder under its usual name or where it
was asked for. Each writer is imported when the reports are written: a run
goes without ElementTree, YAML and Jinja2 until then."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from phalanx import layout

if TYPE_CHECKING:
    from phalanx.model import RunResult


class HtmlElsewhere(Protocol):
    """Another process that writes report.html from results.json
    (tree/htmlaside.py); `finish` says whether it did."""

    def ask(
        self, results_json: Path, html: Path, links: Iterable[tuple[str, Path]], run_dir: Path
    ) -> None: ...

    def finish(self) -> bool: ...


@dataclass(frozen=True)
class ReportPaths:
    """Where reports go; None: the run folder's usual name."""

    json: Path | None = None
    junit: Path | None = None
    tap: Path | None = None
    html: Path | None = None


def prepare_writers(html: bool = True) -> None:
    """Import the writers and compile the HTML templates now, so that
    `write_reports` later only writes: a run does it in a thread while its
    hosts go down."""
    from phalanx.report import json, junit, tap  # noqa: F401

    if html:
        from phalanx.report.html import prepare

        prepare()


def write_reports(
    result: RunResult,
    run_dir: Path,
    paths: ReportPaths | None = None,
    html: bool = True,
    elsewhere: HtmlElsewhere | None = None,
) -> None:
    """`html` False: no report.html (it costs the HTML templates' import).
    `elsewhere`: asked for report.html once results.json is written, while
    JUnit and TAP are written here; if it does not write it, it is written here."""
    from phalanx.report.json import dump_json, to_json
    from phalanx.report.junit import write_junit
    from phalanx.report.tap import write_tap

    paths = paths or ReportPaths()
    report = to_json(result, run_dir)
    json_path = paths.json or run_dir / layout.RESULTS_JSON
    junit_path = paths.junit or run_dir / layout.JUNIT_XML
    tap_path = paths.tap or run_dir / layout.RESULTS_TAP
    html_path = paths.html or run_dir / layout.REPORT_HTML
    # Absolute: a relative link is read as in the run folder, and these are
    # relative to where phalanx runs (`phalanx-results/<run>/results.json`).
    links = [
        ("results.json", json_path.absolute()),
        ("JUnit XML", junit_path.absolute()),
        ("TAP", tap_path.absolute()),
    ]
    dump_json(report, json_path)
    if html and elsewhere is not None:
        elsewhere.ask(json_path, html_path, links, run_dir)
    write_junit(result, run_dir, junit_path)
    write_tap(result, tap_path)
    if html and not (elsewhere is not None and elsewhere.finish()):
        from phalanx.report.html import write_html  # Jinja2: only when it is written

        write_html(report, html_path, links=links, run_dir=run_dir)
