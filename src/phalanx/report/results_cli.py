"""`phalanx results list|show|open`: the past runs in a results folder, as
`avocado jobs list/show` has them. `list --json` and `show --json` are for
scripts; the rest is for a person."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phalanx import layout
from phalanx.exits import EXIT_DEFINITIONS, EXIT_OK

if TYPE_CHECKING:
    # Imported by the commands themselves: every command's parser (`phalanx
    # --help`) imports this module, and the past runs' reader the model.
    from phalanx.report.pastruns import PastRun

Handler = Callable[[argparse.Namespace], int]
AddCommand = Callable[
    ["argparse._SubParsersAction[argparse.ArgumentParser]", str, Handler],
    argparse.ArgumentParser,
]


def _counts(run: PastRun) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(run.counts().items())) or "no cases"


def _took(run: PastRun) -> str:
    if run.duration is None:
        return "-"
    if run.duration < 60:
        return f"{run.duration:.1f}s"
    minutes, rest = divmod(int(run.duration), 60)
    return f"{minutes}m{rest:02d}s"


def _started(run: PastRun) -> str:
    # ISO 8601 with microseconds and offset; a person reads it to the second.
    return run.started_at[:19].replace("T", " ") if run.started_at else "-"


def _row(run: PastRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "folder": str(run.folder),
        "suite": run.suite,
        "status": run.status,
        "reason": run.reason,
        "started_at": run.started_at,
        "duration": run.duration,
        "counts": run.counts(),
        "report": str(run.folder / layout.REPORT_HTML)
        if (run.folder / layout.REPORT_HTML).is_file()
        else None,
        "problem": run.problem,
    }


def list_runs(args: argparse.Namespace) -> int:
    """The runs in the results folder, oldest first: id, suite, status, cases, start, time."""
    from phalanx.report.pastruns import past_runs

    runs = past_runs(args.results)
    if args.json:
        print(json.dumps([_row(r) for r in runs], indent=2))
        return EXIT_OK
    if not runs:
        print(f"no runs in {args.results}")
        return EXIT_OK
    table = [("run", "suite", "status", "started", "took", "cases")]
    for run in runs:
        if run.problem is not None:
            table.append((run.run_id, run.suite or "-", "-", "-", "-", run.problem))
            continue
        table.append(
            (
                run.run_id,
                run.suite or "-",
                run.status or "-",
                _started(run),
                _took(run),
                _counts(run),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)),
            row[5],
            sep="  ",
        )
    return EXIT_OK


def _find(args: argparse.Namespace) -> PastRun | None:
    from phalanx.report.pastruns import RunNotFound, find_run

    try:
        return find_run(args.results, args.run)
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def show(args: argparse.Namespace) -> int:
    """One past run: its status, each case's status and reason, and where its files are."""
    run = _find(args)
    if run is None:
        return EXIT_DEFINITIONS
    if args.json:
        row = _row(run)
        row["cases"] = [{"name": c.name, "status": c.status, "reason": c.reason} for c in run.cases]
        print(json.dumps(row, indent=2))
        return EXIT_OK
    if run.problem is not None:
        print(f"run {run.run_id}: {run.problem}")
        print(f"folder: {run.folder}")
        return EXIT_OK
    print(f"run {run.run_id} · suite {run.suite} · {run.status} in {_took(run)}")
    print(f"started {_started(run)}" + (f" · {run.reason}" if run.reason else ""))
    width = max((len(c.name) for c in run.cases), default=0)
    for case in run.cases:
        reason = f"  {' '.join(case.reason.split())}" if case.reason else ""
        print(f"  {case.status:9} {case.name:{width}}{reason}".rstrip())
    print(f"{len(run.cases)} case{'s' if len(run.cases) != 1 else ''}: {_counts(run)}")
    print(f"folder: {run.folder}")
    report = run.folder / layout.REPORT_HTML
    if report.is_file():
        print(f"report: {report}")
    return EXIT_OK


def open_(args: argparse.Namespace) -> int:
    """Open a past run's report.html in the browser ($BROWSER, else the desktop's)."""
    import webbrowser

    run = _find(args)
    if run is None:
        return EXIT_DEFINITIONS
    report = run.folder / layout.REPORT_HTML
    if not report.is_file():
        print(f"error: {report}: no report here ({run.problem or 'not written'})", file=sys.stderr)
        return EXIT_DEFINITIONS
    if not webbrowser.open(report.resolve().as_uri()):
        print(f"no browser found (set $BROWSER); the report is {report}")
        return EXIT_OK
    print(f"opened {report}")
    return EXIT_OK


def _results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("phalanx-results"),
        metavar="DIR",
        help="the folder `phalanx run --results` wrote to (default: %(default)s)",
    )


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: AddCommand
) -> None:
    listed = command(commands, "list", list_runs)
    _results_option(listed)
    listed.add_argument("--json", action="store_true", help="a JSON array, for scripts")
    for name, handler in (("show", show), ("open", open_)):
        parser = command(commands, name, handler)
        parser.add_argument(
            "run", nargs="?", default="latest", help="a run id, its start, a folder, or latest"
        )
        _results_option(parser)
        if name == "show":
            parser.add_argument("--json", action="store_true", help="as JSON, for scripts")
