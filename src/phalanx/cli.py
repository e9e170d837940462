"""The `phalanx` command.

Exit codes: 0 everything passed or was skipped, 1 a test failed, 2 bad
definitions or usage, 3 an infrastructure error.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from phalanx.model import Status, Suite

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DEFINITIONS = 2
EXIT_INFRASTRUCTURE = 3

app = typer.Typer(
    name="phalanx",
    help="Run system tests across a fleet of machines, in lockstep.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _Err:
    """stderr through Rich, imported on first use: a test tree run never
    prints through it, and Rich costs ~50 ms to import."""

    def print(self, *args: Any, **kwargs: Any) -> None:
        _stderr().print(*args, **kwargs)


@functools.cache
def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


err = _Err()


def exit_code(status: Status) -> int:
    if status in (Status.PASSED, Status.SKIPPED):
        return EXIT_OK
    if status is Status.ERROR:
        return EXIT_INFRASTRUCTURE
    return EXIT_FAILED


def _load(path: Path, suite: str | None, cases: list[str]) -> Suite:
    """The suite to run, or exit 2 with one line per problem."""
    from phalanx.load.errors import DefinitionErrors
    from phalanx.load.repo import check_cases, find_suite

    try:
        loaded = find_suite(path, suite)
    except DefinitionErrors as exc:
        _print_errors([str(e) for e in exc.errors])
        raise typer.Exit(EXIT_DEFINITIONS) from None
    problems = check_cases(loaded, cases)
    if problems:
        _print_errors([str(e) for e in problems])
        raise typer.Exit(EXIT_DEFINITIONS)
    return loaded.select(cases)


def _print_errors(lines: list[str]) -> None:
    for line in lines:
        err.print(f"[red]error:[/red] {line}", markup=True, soft_wrap=True)
    err.print(f"{len(lines)} problem{'s' if len(lines) != 1 else ''} found; nothing was run.")


@app.command()
def run(
    path: Annotated[Path, typer.Argument(help="a suite folder, a repo with -s, or a test tree")],
    suite: Annotated[str | None, typer.Option("-s", "--suite", help="the suite to run")] = None,
    case: Annotated[
        list[str] | None, typer.Option("-t", "--test", help="run only this case (repeatable)")
    ] = None,
    results: Annotated[
        Path, typer.Option("--results", help="folder that receives the run folder")
    ] = Path("phalanx-results"),
    junit: Annotated[Path | None, typer.Option("--junit", help="JUnit XML path")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="results JSON path")] = None,
    tap: Annotated[Path | None, typer.Option("--tap", help="TAP path")] = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="one line per event, no live view")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="show stage output")] = False,
    heartbeat_timeout: Annotated[
        float, typer.Option(help="seconds of silence before an agent is lost")
    ] = 10.0,
    connect_timeout: Annotated[float, typer.Option(help="seconds to wait for agents")] = 60.0,
    # Test trees (a folder with tests.yaml) only:
    test_regex: Annotated[str | None, typer.Option(help="tree: tests whose name matches")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("-g", "--tag", help="tree: with this tag")
    ] = None,
    exclude_tag: Annotated[
        list[str] | None, typer.Option("-G", "--exclude-tag", help="tree: without this tag")
    ] = None,
    list_tests: Annotated[bool, typer.Option("--list", help="tree: list tests, run none")] = False,
    list_tags: Annotated[bool, typer.Option(help="tree: list tags, run none")] = False,
    dry_run: Annotated[bool, typer.Option(help="tree: show what would run")] = False,
    number: Annotated[int, typer.Option(help="tree: run the selection N times")] = 1,
    random_order: Annotated[bool, typer.Option(help="tree: shuffle the tests")] = False,
    seed: Annotated[int | None, typer.Option(help="tree: seed for --random-order")] = None,
    stop_on_error: Annotated[bool, typer.Option(help="tree: stop after a failure")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="tree: kill a test after S seconds without output")
    ] = None,
    jobs: Annotated[int | None, typer.Option("-j", "--jobs", help="tree: workers")] = None,
) -> None:
    """Run a suite on local hosts under an embedded coordinator, or a test tree."""
    from phalanx.load.tree import tree_folder

    if tree_folder(path) is not None:
        from phalanx.tree.cli import TreeArgs
        from phalanx.tree.cli import main as run_tree

        tree = TreeArgs(
            case or [], test_regex, tag or [], exclude_tag or [], list_tests, list_tags,
            dry_run, number, random_order, seed, stop_on_error, timeout, jobs, results,
            json=json_path, junit=junit, tap=tap, verbose=verbose,
        )  # fmt: skip
        raise typer.Exit(run_tree(path, tree))
    tree_only = {
        "--test-regex": test_regex is not None,
        "-g/--tag": bool(tag),
        "-G/--exclude-tag": bool(exclude_tag),
        "--list": list_tests,
        "--list-tags": list_tags,
        "--dry-run": dry_run,
        "--number": number != 1,
        "--random-order": random_order,
        "--seed": seed is not None,
        "--stop-on-error": stop_on_error,
        "--timeout": timeout is not None,
        "-j/--jobs": jobs is not None,
    }
    given = [name for name, used in tree_only.items() if used]
    if given:
        _print_errors(
            [f"{path}: {', '.join(given)} apply to test trees (a folder with tests.yaml) only"]
        )
        raise typer.Exit(EXIT_DEFINITIONS)
    from phalanx import aio
    from phalanx.console import make_console, summary
    from phalanx.coordinator.runs import ReportPaths, RunOptions, run_local

    loaded = _load(path, suite, case or [])
    options = RunOptions(
        results=results,
        heartbeat_timeout=heartbeat_timeout,
        connect_timeout=connect_timeout,
        reports=ReportPaths(json=json_path, junit=junit, tap=tap),
    )
    console = make_console(plain=plain, verbose=verbose, stream=sys.stdout)
    try:
        with console:
            result, folder = aio.run(run_local(loaded, options, [console]))
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    from rich.console import Console

    summary(result, Console(), folder)
    raise typer.Exit(exit_code(result.status))


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="a definitions repo or a suite folder")],
) -> None:
    """Check every definition; nothing runs. Exit 2 on any problem."""
    from phalanx.load.repo import load_repo

    repo = load_repo(_repo_root(path))
    if repo.errors:
        _print_errors([str(e) for e in repo.errors])
        raise typer.Exit(EXIT_DEFINITIONS)
    typer.echo(
        f"ok: {len(repo.suites)} suite{'s' if len(repo.suites) != 1 else ''}, "
        f"{len(repo.clusters)} cluster{'s' if len(repo.clusters) != 1 else ''}"
    )


@app.command("list")
def list_(
    path: Annotated[Path, typer.Argument(help="a definitions repo")],
) -> None:
    """Suites, cases, clusters and schedules of a definitions repo."""
    from phalanx.load.repo import load_repo

    repo = load_repo(_repo_root(path))
    from rich.console import Console
    from rich.table import Table

    out = Console()
    table = Table("suite", "cluster", "hosts", "cases", "schedule", title="suites")
    for name, s in sorted(repo.suites.items()):
        schedule = " ".join(f"{k}={v}" for k, v in (s.schedule or {}).items()) or "-"
        table.add_row(
            name,
            s.cluster.name,
            str(len(s.hosts)),
            ", ".join(c.name for c in s.cases),
            schedule,
        )
    out.print(table)
    clusters = Table("cluster", "hosts", title="clusters")
    for name, c in sorted(repo.clusters.items()):
        clusters.add_row(
            name,
            ", ".join(
                f"{h.name}{'[' + ','.join(h.roles) + ']' if h.roles else ''}" for h in c.hosts
            ),
        )
    out.print(clusters)
    if repo.errors:
        _print_errors([str(e) for e in repo.errors])
        raise typer.Exit(EXIT_DEFINITIONS)


def _repo_root(path: Path) -> Path:
    from phalanx.load.repo import repo_root

    return repo_root(path) or path


results_app = typer.Typer(help="Work with the results of past runs.", no_args_is_help=True)
app.add_typer(results_app, name="results")


@results_app.command("convert")
def results_convert(
    results_json: Annotated[Path, typer.Argument(help="a run's results.json")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="json, yaml, csv, table or html")
    ] = "table",
    stat_name: Annotated[
        str | None, typer.Option("--stat", help="summarize this numeric result field")
    ] = None,
    out: Annotated[Path | None, typer.Option("-o", "--output", help="write here")] = None,
) -> None:
    """Per host and test results (final_results) in another format."""
    from phalanx.report.convert import FORMATS, render, rows, stat
    from phalanx.report.json import read_json

    if fmt not in FORMATS:
        err.print(f"error: --format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        raise typer.Exit(EXIT_DEFINITIONS)
    try:
        run_result = read_json(results_json)
    except (OSError, ValueError) as exc:
        err.print(f"error: {results_json}: {exc}")
        raise typer.Exit(EXIT_DEFINITIONS) from None
    found = rows(run_result)
    summary = stat(found, stat_name) if stat_name else None
    if stat_name and summary is None:
        err.print(f"error: no result has a numeric field {stat_name!r}")
        raise typer.Exit(EXIT_DEFINITIONS)
    text = render(found, fmt, summary)
    if out is not None:
        out.write_text(text)
    else:
        sys.stdout.write(text)


@app.command()
def replay(
    trace: Annotated[Path, typer.Argument(help="a walk trace (JSON lines) written with log_dir")],
    walk_id: Annotated[int, typer.Argument(help="the walk to replay")],
    state: Annotated[
        str | None, typer.Option("--state", help="initial state, as JSON (default: the run's own)")
    ] = None,
    step: Annotated[bool, typer.Option("--step", help="pause before each action")] = False,
) -> None:
    """Replay exactly one walk of a combinatorial run."""
    from phalanx.combinatorial.cli import replay as replay_walk

    raise typer.Exit(replay_walk(trace, walk_id, state, step))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def agent(ctx: typer.Context) -> None:
    """Run the agent daemon on a host (see `phalanx agent --help`)."""
    from phalanx.agent.__main__ import main as agent_main

    raise typer.Exit(agent_main(list(ctx.args)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
