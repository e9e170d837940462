"""The `phalanx` command.

Exit codes: 0 everything passed or was skipped, 1 a test failed, 2 bad
definitions or usage, 3 an infrastructure error, 130 cancelled.

The parser is the stdlib's argparse, and every command imports what it needs
when it runs: `phalanx run` on a 500-test tree has about a second in all,
and a CLI framework costs a tenth of that to import (Typer 0.29 builds a
pydantic validator per option on top, another quarter).
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from phalanx.load.errors import DefinitionError
    from phalanx.model import RunResult, Suite
    from phalanx.tags import Unfilled

from phalanx import argtypes
from phalanx.exits import EXIT_DEFINITIONS, EXIT_INTERRUPTED, EXIT_OK, for_status

# `--json` with no FILE (the listing goes to stdout), and a bare `-k`.
STDOUT = Path("-")
KEEP_CORE = "\0keep-core"


class Exit(Exception):
    """Stop a command with an exit code (after it said why)."""

    def __init__(self, code: int) -> None:
        self.code = code


class _Err:
    """stderr through Rich, imported on first use: a test tree run never
    prints through it, and Rich costs ~50 ms to import."""

    def print(self, *args: Any, **kwargs: Any) -> None:
        _stderr().print(*args, **kwargs)


@functools.cache
def _stderr() -> Console:
    from rich.console import Console

    from phalanx.report.terminal import SafeStream

    return Console(file=SafeStream(sys.stderr), highlight=False)  # type: ignore[arg-type]


err = _Err()


def _load(path: Path, suite: str | None, cases: list[str]) -> Suite:
    """The suite to run, or exit 2 with one line per problem."""
    from phalanx.load.errors import DefinitionErrors
    from phalanx.load.repo import check_cases, find_suite

    try:
        loaded = find_suite(path, suite)
    except DefinitionErrors as exc:
        _print_errors([_problem(e) for e in exc.errors])
        raise Exit(EXIT_DEFINITIONS) from None
    problems = check_cases(loaded, cases)
    if problems:
        _print_errors([_problem(e) for e in problems])
        raise Exit(EXIT_DEFINITIONS)
    return loaded.select(cases)


def _on_compose(suite: Suite, file: Path) -> Suite:
    """`--compose FILE`: the suite on the compose file's services, as
    container hosts, instead of its own cluster's."""
    import dataclasses

    from phalanx.load.compose import load_compose
    from phalanx.load.errors import DefinitionErrors
    from phalanx.model import PROVIDER_PODMAN, Cluster

    try:
        hosts, unhonoured = load_compose(file.resolve())
    except DefinitionErrors as exc:
        _print_errors([_problem(e) for e in exc.errors])
        raise Exit(EXIT_DEFINITIONS) from None
    cluster = Cluster(
        name=suite.cluster.name,
        hosts=hosts,
        source=file,
        provider=PROVIDER_PODMAN,
        coordinator_aliases=suite.cluster.coordinator_aliases,
        unhonoured=unhonoured,
    )
    return dataclasses.replace(suite, cluster=cluster)


def _problem(error: DefinitionError) -> str:
    from phalanx.report.terminal import shown_problem

    return shown_problem(error)


def _unfilled(tag: Unfilled) -> str:
    import dataclasses

    from phalanx.report.terminal import shown_path

    if tag.origin == "inline" or "://" in tag.origin:
        return str(tag)
    return str(dataclasses.replace(tag, origin=shown_path(tag.origin)))


def _print_errors(lines: list[str]) -> None:
    for line in lines:
        # The problem's own text is printed as it is: `[name]` in a message is
        # not Rich markup.
        err.print("[red]error:[/red] ", markup=True, end="")
        err.print(line, markup=False, soft_wrap=True)
    err.print(f"{len(lines)} problem{'s' if len(lines) != 1 else ''} found; nothing was run.")


# --- commands ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Run a suite on local hosts under an embedded coordinator, or a test tree."""
    from phalanx.load.treeroot import tree_folder

    keep_core = args.keep_core or args.keywords == KEEP_CORE
    keywords = None if args.keywords == KEEP_CORE else args.keywords
    if args.json == STDOUT and not args.list_tests:
        _print_errors(["--json without a FILE prints the --list as JSON; give a FILE for a run"])
        return EXIT_DEFINITIONS
    if tree_folder(args.path) is not None:
        return _run_tree(args, keep_core, keywords)
    return _run_suite_file(args, keep_core, keywords)


def _run_tree(args: argparse.Namespace, keep_core: bool, keywords: str | None) -> int:
    """`phalanx run TREE`: a test tree's tests on this machine (tree/cli.py)."""
    if args.provider or args.compose:
        from phalanx.report.terminal import shown_path

        _print_errors(
            [
                f"{shown_path(args.path)}: --provider and --compose apply to suites; "
                "a test tree runs its tests on this machine"
            ]
        )
        return EXIT_DEFINITIONS
    from phalanx.tree.cli import TreeArgs
    from phalanx.tree.cli import main as run_tree

    tree = TreeArgs(
        args.test, args.test_regex, args.tag, args.exclude_tag, args.list_tests,
        args.list_tags, args.dry_run, args.number, args.random_order, args.seed,
        args.stop_on_error, args.timeout, args.jobs, args.results,
        json=args.json, junit=args.junit, tap=args.tap, verbose=args.verbose,
        cancel_grace=args.cancel_grace, skip_regexes=args.skip_test_regex,
        list_terse=args.list_terse, cleanup=args.cleanup, keep_core=keep_core,
        valgrind=args.valgrind, pcap=args.pcap, keep_full_logs=args.keep_full_logs,
        testsuite_config=args.testsuite_config, asterisk=args.asterisk,
        python=args.python, keywords=keywords, last_failed=args.last_failed,
        failed_first=args.failed_first,
    )  # fmt: skip
    return run_tree(args.path, tree)


def _run_suite_file(args: argparse.Namespace, keep_core: bool, keywords: str | None) -> int:
    """`phalanx run SUITE`: a suite's cases on its cluster's hosts (listed
    only, with --list or --list-tags)."""
    given = _tree_only_options(args, keep_core)
    if given:
        from phalanx.report.terminal import shown_path

        _print_errors(
            [
                f"{shown_path(args.path)}: {', '.join(given)} apply to test trees "
                "(a folder with tests.yaml) only"
            ]
        )
        return EXIT_DEFINITIONS
    from phalanx.providernames import PROVIDER_LOCAL, PROVIDER_NETNS, PROVIDER_PODMAN
    from phalanx.providers import zygotestart

    # Local, netns and container hosts' agents are forked by one fork server.
    forked = (PROVIDER_LOCAL, PROVIDER_NETNS, PROVIDER_PODMAN)
    if args.provider in (None, *forked) and not (args.list_tests or args.list_tags):
        # Most suites run on such hosts: the agents' fork server starts
        # now and imports while this process loads the suite and imports
        # the coordinator (ended below if the suite's hosts are others).
        zygotestart.prestart(sys.executable)
    try:
        found = _load(args.path, args.suite, args.test)
        if args.compose is not None:
            found = _on_compose(found, args.compose)
        loaded = _selected(args, found, keywords)
        if loaded is None:
            return EXIT_OK  # listed, not run
        if (args.provider or loaded.cluster.provider or PROVIDER_LOCAL) not in forked:
            zygotestart.discard_prestarted()
        return _run_suite(args, loaded)
    finally:
        zygotestart.discard_prestarted()


def _tree_only_options(args: argparse.Namespace, keep_core: bool) -> list[str]:
    """The options given that only a test tree takes."""
    return [
        name
        for name, used in {
            "--list-terse": args.list_terse,
            "--dry-run": args.dry_run,
            "--number": args.number != 1,
            "--random-order": args.random_order,
            "--seed": args.seed is not None,
            "--stop-on-error": args.stop_on_error,
            "--timeout": args.timeout is not None,
            "-j/--jobs": args.jobs is not None,
            "-c/--cleanup": args.cleanup,
            "-k/--keep-core": keep_core,
            "-V/--valgrind": args.valgrind,
            "--pcap": args.pcap,
            "--keep-full-logs": args.keep_full_logs,
            "--testsuite-config": args.testsuite_config is not None,
            "--asterisk": args.asterisk is not None,
            "--python": args.python is not None,
        }.items()
        if used
    ]


def _run_suite(args: argparse.Namespace, loaded: Suite) -> int:
    from phalanx import aio
    from phalanx.console import make_console, summary, terminal_console
    from phalanx.coordinator.runs import RunOptions, run_local
    from phalanx.engine.step import Cancellation
    from phalanx.layout import new_run_id
    from phalanx.report.writers import ReportPaths

    run_id = new_run_id()  # known before the run: the console names files in its folder
    options = RunOptions(
        results=args.results,
        heartbeat_timeout=args.heartbeat_timeout,
        provider_override=args.provider,
        connect_timeout=args.connect_timeout,
        reports=ReportPaths(json=args.json, junit=args.junit, tap=args.tap),
        run_id=run_id,
        scripts_root=_repo_root(args.path).resolve(),  # /showScript for the hosts
    )
    console = make_console(
        plain=args.plain, verbose=args.verbose, stream=sys.stdout, run_dir=args.results / run_id
    )
    _log_with_time()
    cancellation = Cancellation()

    async def cancellable() -> tuple[RunResult, Path]:
        # The first Ctrl-C (or SIGTERM) cancels the run, the finalizes still
        # run for --cancel-grace; a second one cuts them short. The reports
        # are written either way.
        with aio.interrupts(
            cancellation.cancel, cancellation.abort, args.cancel_grace, on_first=_cancelling
        ):
            return await run_local(loaded, options, [console], cancellation)

    try:
        with console:
            result, folder = aio.run(cancellable())
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    summary(result, terminal_console(sys.stdout), folder)
    return for_status(result.status)


def _selected(args: argparse.Namespace, suite: Suite, keywords: str | None) -> Suite | None:
    """The suite with the cases -k, -g, -G, the regexes and --last-failed /
    --failed-first leave, in the order they run; None when it was only
    listed (--list, --list-tags). Exit 2 when the selection is bad or empty."""
    import dataclasses

    if args.list_tags:
        from phalanx.tree.cli import list_tags  # the test trees' command: a run goes without

        list_tags(suite.cases, sys.stdout)
        if not args.list_tests:
            return None
    selecting = bool(args.test_regex or args.tag or args.exclude_tag or args.skip_test_regex)
    reordering = bool(args.last_failed or args.failed_first or args.list_tests)
    if not (selecting or reordering or keywords is not None) and suite.cases:
        # Most runs select nothing: the selection's modules (the -k
        # grammar, the past runs' reader) stay out of them.
        return suite
    from phalanx.tree.rerun import rerun_order
    from phalanx.tree.select import Selection, SelectionError, select

    selection = Selection(
        regexes=tuple(args.test_regex),
        tags=tuple(args.tag),
        exclude_tags=tuple(args.exclude_tag),
        skip_regexes=tuple(args.skip_test_regex),
        keywords=keywords,
    )
    try:
        cases = select(suite.cases, selection, suite.name)
    except SelectionError as exc:
        _print_errors([str(exc)])
        raise Exit(EXIT_DEFINITIONS) from None
    cases, note = rerun_order(
        cases,
        args.results,
        suite.name,
        last_failed=args.last_failed,
        failed_first=args.failed_first,
    )
    if note is not None:
        print(note, file=sys.stderr)
    if args.list_tests:
        from phalanx.report import listing

        if args.json is not None:
            listing.write_json([listing.case_row(c) for c in cases], sys.stdout, args.json)
        else:
            listing.write_cases(cases, sys.stdout)
        return None
    if not cases:
        _print_errors([f"suite {suite.name!r}: the selection leaves no case to run"])
        raise Exit(EXIT_DEFINITIONS)
    return dataclasses.replace(suite, cases=tuple(cases))


def _log_with_time() -> None:
    """The coordinator's own warnings (an agent lost) on stderr, stamped
    like every line of the plain console."""
    import logging

    from phalanx.report.terminal import SafeStream

    class Clock(logging.Formatter):
        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            return super().formatTime(record, "%H:%M:%S") + f".{int(record.msecs):03d}"

    logger = logging.getLogger("phalanx")
    if any(getattr(h, "phalanx_clock", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(SafeStream(sys.stderr))
    handler.setFormatter(Clock("%(asctime)s %(message)s"))
    handler.phalanx_clock = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def _cancelling(reason: str) -> None:
    print(
        f"{reason}: stopping the run; finalizes still run "
        "(a second Ctrl-C skips them), then the reports are written",
        file=sys.stderr,
        flush=True,
    )


def validate(args: argparse.Namespace) -> int:
    """Check every definition; nothing runs. Exit 2 on any problem."""
    from phalanx.load.repo import load_repo
    from phalanx.tags import unfilled

    repo = load_repo(_repo_root(args.path))
    problems = [_problem(e) for e in repo.errors]
    warnings = [_unfilled(u) for s in repo.suites.values() for u in unfilled(s)]
    warnings += [
        f"{c.source or c.name}: compose keys phalanx does not honour: {', '.join(c.unhonoured)}"
        for c in repo.clusters.values()
        if c.unhonoured
    ]
    if args.strict:
        problems, warnings = problems + warnings, []
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", markup=True, soft_wrap=True)
    _print_skipped(repo.skipped)
    if problems:
        _print_errors(problems)
        return EXIT_DEFINITIONS
    print(
        f"ok: {len(repo.suites)} suite{'s' if len(repo.suites) != 1 else ''}, "
        f"{len(repo.clusters)} cluster{'s' if len(repo.clusters) != 1 else ''}"
    )
    return EXIT_OK


def list_(args: argparse.Namespace) -> int:
    """Suites, cases, clusters and schedules of a definitions repo."""
    from rich.console import Console
    from rich.table import Table

    from phalanx.console import pipe_width
    from phalanx.load.repo import load_repo

    repo = load_repo(_repo_root(args.path))
    out = Console(width=pipe_width(sys.stdout))
    # Only what loaded is tabled; what did not is listed below, problem by problem.
    if repo.suites:
        table = Table("suite", "cluster", "hosts", "cases", "schedule", title="suites")
        for name, s in sorted(repo.suites.items()):
            schedule = " ".join(f"{k}={v}" for k, v in (s.schedule or {}).items()) or "-"
            cases = ", ".join(c.name for c in s.cases)
            table.add_row(name, s.cluster.name, str(len(s.hosts)), cases, schedule)
        out.print(table)
    if repo.clusters:
        clusters = Table("cluster", "hosts", title="clusters")
        for name, c in sorted(repo.clusters.items()):
            hosts = [f"{h.name}{'[' + ','.join(h.roles) + ']' if h.roles else ''}" for h in c.hosts]
            clusters.add_row(name, ", ".join(hosts))
        out.print(clusters)
    _print_skipped(repo.skipped)
    if repo.errors:
        _print_errors([_problem(e) for e in repo.errors])
        return EXIT_DEFINITIONS
    return EXIT_OK


def _print_skipped(folders: list[Path]) -> None:
    for folder in folders:
        print(f"note: {folder}: not a suite (no suite.yaml or test_suite.py), skipped")


def _repo_root(path: Path) -> Path:
    from phalanx.load.repo import repo_root

    return repo_root(path) or path


def results_convert(args: argparse.Namespace) -> int:
    """Per host and test results (final_results) in another format."""
    from phalanx.report.convert import FORMATS, render, rows, stat
    from phalanx.report.json import read_json

    if args.format not in FORMATS:
        err.print(f"error: --format must be one of {', '.join(FORMATS)}, not {args.format!r}")
        return EXIT_DEFINITIONS
    try:
        run_result = read_json(args.results_json)
    except (OSError, ValueError) as exc:
        from phalanx.report.terminal import shown_path

        err.print(f"error: {shown_path(args.results_json)}: {exc}")
        return EXIT_DEFINITIONS
    found = rows(run_result)
    if not found:
        from phalanx.report.terminal import shown_path

        # Said on stderr: stdout still gets the format's empty document.
        err.print(
            f"{shown_path(args.results_json)}: no host reported results in run "
            f"{run_result.run_id} (suite {run_result.suite}): only walks and Python tests "
            "report them; `phalanx results show` lists the cases' statuses",
            markup=False,
            soft_wrap=True,
        )
        if args.format == "table":
            return EXIT_OK  # an empty table says nothing the line above did not
    summary = stat(found, args.stat) if args.stat else None
    if args.stat and summary is None:
        err.print(f"error: no result has a numeric field {args.stat!r}")
        return EXIT_DEFINITIONS
    text = render(found, args.format, summary)
    if args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def replay(args: argparse.Namespace) -> int:
    """Replay exactly one walk of a combinatorial run."""
    from phalanx.combinatorial.cli import replay as replay_walk

    found = _trace(args.trace)
    if isinstance(found, str):
        err.print(f"error: {found}", markup=False, soft_wrap=True)
        return EXIT_DEFINITIONS
    _import_kept_modules(found)
    return replay_walk(found, args.walk_id, args.state, args.step)


def _import_kept_modules(trace: Path) -> None:
    """The actions modules a walks case keeps in its trace, importable
    first: the replay line works without PYTHONPATH, from any copy of the
    trace. In a temporary folder that goes when this process ends."""
    import atexit
    import shutil
    import tempfile

    from phalanx.combinatorial.trace import kept_modules
    from phalanx.host.pychild import install_modules

    modules = kept_modules(trace)
    if modules:
        folder = Path(tempfile.mkdtemp(prefix="phalanx-replay-"))
        atexit.register(shutil.rmtree, folder, True)
        install_modules(modules, folder)  # and puts the folder first on sys.path


def _trace(given: Path) -> Path | str:
    """The trace a report's `phalanx replay walks/…trace.jsonl N` names: the
    path is the host's (relative to its working folder, `hosts/<host>/` in
    the run folder), so it is also looked for there from the run folder and
    from where the run was started; or why it cannot be found."""
    if given.is_absolute() or given.exists():
        return given
    found = sorted(
        {
            p
            for pattern in ("hosts/*/", "*/*/hosts/*/")
            for p in Path().glob(pattern + given.as_posix())
            if p.is_file()
        }
    )
    if len(found) == 1:
        print(f"(trace found at {found[0]})")
        return found[0]
    if not found:
        return (
            f"{given}: no such trace here, nor under hosts/*/ (a run folder) or "
            "*/*/hosts/*/ (where runs were started)"
        )
    return f"{given} is in several run folders: " + ", ".join(str(p) for p in found[:5])


def cleanup(args: argparse.Namespace) -> int:
    """Remove what killed runs left on this machine: netns hosts' namespaces,
    links, bridges and /etc/netns folders, container hosts' containers and
    volumes. Live runs are left alone."""
    from phalanx import aio
    from phalanx.exits import EXIT_INFRASTRUCTURE
    from phalanx.providers.netns import describe, missing_privileges, sweep

    problem = missing_privileges()
    if problem is not None:
        print(f"phalanx cleanup: {problem}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE
    from phalanx.providers import containers

    # Containers first: their processes hold the namespaces' links.
    lines = describe(aio.run(containers.sweep()))
    lines += describe(aio.run(sweep()))
    for line in lines:
        print(line)
    if not lines:
        print("nothing to clean up")
    return EXIT_OK


def image_build(args: argparse.Namespace) -> int:
    """Build the qemu provider's tiny VM image (kernel + initramfs) and its
    root disk (what VMs that snapshot or migrate boot), once: each is cached
    by content hash. Prints each one's folder and what it is."""
    if args.container:
        return _container_image(args)
    if args.packages or args.tag:
        print("phalanx image build: --packages and --tag go with --container", file=sys.stderr)
        return 2
    from phalanx.providers.vmimage import ImageError, build_image, build_root_disk

    try:
        image = build_image()
        how = "built" if image.built else "cached"
        print(f"{image.path} ({how}; kernel {image.kernel_version})", flush=True)
        disk = build_root_disk()
    except ImageError as exc:
        print(f"phalanx image build: {exc}", file=sys.stderr)
        return 1
    how = "built" if disk.built else "cached"
    print(f"{disk.path} ({how}; root disk {disk.disk.name}, Python {disk.python})")
    return 0


def _container_image(args: argparse.Namespace) -> int:
    from phalanx import aio
    from phalanx.providers.containerimage import ImageBuildError, build, packages_of
    from phalanx.providers.containers import EngineError, engine

    try:
        image = aio.run(build(engine(), packages_of(args.packages), args.tag))
    except (ImageBuildError, EngineError) as exc:
        print(f"phalanx image build: {exc}", file=sys.stderr)
        return 1
    how = "built" if image.built else "cached"
    also = f", tagged {args.tag}" if args.tag else ""
    print(f"{image.tag} ({how}{also})")
    return 0


def agent(argv: list[str]) -> int:
    """Run the agent daemon on a host (see `phalanx agent --help`)."""
    from phalanx.host.__main__ import main as agent_main

    return agent_main(argv)


def hypervisor(argv: list[str]) -> int:
    """Run a coordinator's VMs on this machine (see `phalanx hypervisor --help`)."""
    from phalanx.hypervisor.__main__ import main as hypervisor_main

    return hypervisor_main(argv)


# --- the parser -------------------------------------------------------------------------


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    doc = (handler.__doc__ or "").strip()
    parser = commands.add_parser(name, help=summary(doc), description=doc)
    parser.set_defaults(handler=handler)
    return parser


def summary(doc: str) -> str:
    """A command's one-line help: its docstring's first line, carried on
    to the end of the sentence it is in (lines are wrapped anywhere)."""
    first = " ".join(doc.split("\n", 1)[0].split())
    paragraph = " ".join(doc.split("\n\n")[0].split())
    end = paragraph.find(". ", max(0, len(first) - 1))
    return paragraph if end < 0 else paragraph[: end + 1]


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a suite folder, a repo with -s, or a test tree")
    parser.add_argument(
        "-s", "--suite", metavar="NAME", help="the suite to run (in a definitions repo)"
    )
    parser.add_argument(
        "-t",
        "--test",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this case, or this test of a tree (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show stage output")
    reports = parser.add_argument_group("reports")
    reports.add_argument(
        "--results",
        type=Path,
        default=Path("phalanx-results"),
        metavar="DIR",
        help="folder that receives the run folder (default: %(default)s)",
    )
    reports.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    reports.add_argument(
        "--json",
        type=Path,
        nargs="?",
        const=STDOUT,
        metavar="FILE",
        help="also write results JSON here; with --list and no FILE: the list as JSON",
    )
    reports.add_argument("--tap", type=Path, metavar="FILE", help="also write TAP here")
    parser.add_argument(
        "--cancel-grace",
        type=argtypes.seconds,
        default=30.0,
        metavar="S",
        help="after Ctrl-C or SIGTERM, seconds the finalizes may still take (default: %(default)s)",
    )
    _selection_options(parser)
    suites = parser.add_argument_group("suites")
    suites.add_argument("--plain", action="store_true", help="one line per event, no live view")
    suites.add_argument(
        "--provider",
        type=argtypes.provider,
        metavar="NAME",
        help="serve the hosts this way, whatever the cluster says: local, netns (a network "
        "namespace per host; needs root), ssh, agents, qemu, podman (a container per host; "
        "needs root), or an installed plug-in's",
    )
    suites.add_argument(
        "--compose",
        type=Path,
        metavar="FILE",
        help="run the suite on this compose file's services (container hosts, provider podman)",
    )
    suites.add_argument(
        "--heartbeat-timeout",
        type=argtypes.seconds,
        default=10.0,
        metavar="S",
        help="seconds of silence before an agent is lost (default: %(default)s)",
    )
    suites.add_argument(
        "--connect-timeout",
        type=argtypes.seconds,
        default=60.0,
        metavar="S",
        help="seconds to wait for agents (default: %(default)s)",
    )
    tree = parser.add_argument_group(
        "test trees (a folder with tests.yaml; Asterisk's runtests.py options, but -v is"
        " --verbose here, not --version)"
    )
    tree.add_argument(
        "--list-terse", action="store_true", help="list as runtests.py: nnnn E|S|D name [unmet]"
    )
    tree.add_argument("-d", "--dry-run", action="store_true", help="show what would run")
    tree.add_argument(
        "--number", type=argtypes.count, default=1, metavar="N", help="run the selection N times"
    )
    tree.add_argument("--random-order", action="store_true", help="shuffle the tests")
    tree.add_argument("--seed", type=int, metavar="S", help="seed for --random-order")
    tree.add_argument("--stop-on-error", action="store_true", help="stop after a failure")
    tree.add_argument(
        "--timeout",
        type=argtypes.seconds,
        metavar="S",
        help="kill a test after S seconds without output",
    )
    tree.add_argument(
        "-c", "--cleanup", action="store_true", help="remove passing tests' sandboxes"
    )
    tree.add_argument(
        "--keep-core", action="store_true", help="accepted (phalanx deletes no core file)"
    )
    tree.add_argument(
        "-V", "--valgrind", action="store_true", help="VALGRIND_ENABLE=true for the tests"
    )
    tree.add_argument("--pcap", action="store_true", help="PCAP=yes for the tests")
    tree.add_argument(
        "--keep-full-logs", action="store_true", help="accepted (phalanx keeps all output)"
    )
    tree.add_argument(
        "--testsuite-config",
        type=Path,
        metavar="FILE",
        help="the suite's test-config.yaml (default: the one beside the tree)",
    )
    tree.add_argument(
        "--asterisk", type=Path, metavar="PATH", help="the asterisk binary `asterisk:` checks ask"
    )
    tree.add_argument(
        "--python",
        type=Path,
        metavar="PATH",
        help="interpreter for `python:` checks (default: the suite's venv, else phalanx's)",
    )
    tree.add_argument(
        "-j",
        "--jobs",
        type=argtypes.count,
        metavar="N",
        help="workers (default: the number of cores)",
    )


def _selection_options(parser: argparse.ArgumentParser) -> None:
    """Which cases run, for suites and test trees alike (phalanx.tree.select)."""
    chosen = parser.add_argument_group("selecting cases (suites and test trees)")
    chosen.add_argument(
        "-k",
        dest="keywords",
        nargs="?",
        const=KEEP_CORE,
        metavar="EXPR",
        help="cases whose name or tags match, as pytest's -k: 'login and not slow'"
        " (a bare -k is runtests.py's --keep-core)",
    )
    chosen.add_argument(
        "-g", "--tag", action="append", default=[], help="cases with this tag (repeatable: any)"
    )
    chosen.add_argument(
        "-G",
        "--exclude-tag",
        "--skip-tag",
        action="append",
        default=[],
        metavar="TAG",
        help="cases without this tag",
    )
    chosen.add_argument(
        "--test-regex",
        action="append",
        default=[],
        metavar="REGEX",
        help="cases whose name matches (repeatable: any)",
    )
    chosen.add_argument(
        "-T",
        "--skip-test-regex",
        action="append",
        default=[],
        metavar="REGEX",
        help="not the cases whose name matches (repeatable)",
    )
    chosen.add_argument(
        "--lf",
        "--last-failed",
        dest="last_failed",
        action="store_true",
        help="only the cases that did not pass in the latest run in --results (all if none)",
    )
    chosen.add_argument(
        "--ff",
        "--failed-first",
        dest="failed_first",
        action="store_true",
        help="the latest run's failures first, then the rest",
    )
    chosen.add_argument(
        "-l",
        "--list",
        "--list-tests",
        dest="list_tests",
        action="store_true",
        help="list the selected cases, run none (--json: as JSON)",
    )
    chosen.add_argument("-L", "--list-tags", action="store_true", help="list tags, run none")


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; `only="run"`: the top parser with `run` alone
    (what `phalanx run ...` parses: the same options, help and errors),
    without importing every other command's module to describe it."""
    top = argparse.ArgumentParser(
        prog="phalanx",
        description="Run system tests across a fleet of machines, in lockstep.",
        epilog="Exit codes: 0 passed, 1 a test failed, 2 bad definitions or usage, "
        "3 an infrastructure error, 130 cancelled (Ctrl-C or SIGTERM).",
    )
    from phalanx import __version__

    top.add_argument("--version", action="version", version=f"phalanx {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _run_options(_command(commands, "run", run))
    if only == "run":
        return top
    checking = _command(commands, "validate", validate)
    checking.add_argument("path", type=Path, help="a definitions repo or a suite folder")
    checking.add_argument("--strict", action="store_true", help="treat warnings as problems")
    _command(commands, "list", list_).add_argument("path", type=Path, help="a definitions repo")
    from phalanx import plugins_command

    plugins_command.add_command(commands, _command)
    results = commands.add_parser(
        "results", help="Work with the results of past runs.", description="Past runs' results."
    )
    results_commands = results.add_subparsers(dest="results_command", metavar="COMMAND")
    results_commands.required = True
    convert = _command(results_commands, "convert", results_convert)
    convert.add_argument("results_json", type=Path, help="a run's results.json")
    convert.add_argument(
        "-f", "--format", default="table", help="json, yaml, csv, table or html (default: table)"
    )
    convert.add_argument("--stat", metavar="NAME", help="summarize this numeric result field")
    convert.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    from phalanx.report import results_cli

    results_cli.add_commands(results_commands, _command)
    _command(commands, "cleanup", cleanup)
    walk = _command(commands, "replay", replay)
    walk.add_argument("trace", type=Path, help="a walk trace (JSON lines) written with log_dir")
    walk.add_argument("walk_id", type=int, help="the walk to replay")
    walk.add_argument("--state", help="initial state, as JSON (default: the run's own)")
    walk.add_argument("--step", action="store_true", help="pause before each action")
    image = commands.add_parser(
        "image",
        help="The qemu provider's VM image, or a container image.",
        description="The VM image, or (--container) a Debian container image.",
    )
    image_commands = image.add_subparsers(dest="image_command", metavar="COMMAND")
    image_commands.required = True
    build = _command(image_commands, "build", image_build)
    build.add_argument(
        "--container",
        action="store_true",
        help="a Debian container image (provider: podman) from Debian's mirror instead",
    )
    build.add_argument(
        "--packages", default="", metavar="A,B", help="Debian packages the container image holds"
    )
    build.add_argument("--tag", metavar="NAME", help="also tag the container image NAME")
    commands.add_parser(
        "agent", help=(agent.__doc__ or "").strip(), add_help=False
    )  # its own parser reads the rest: see main()
    commands.add_parser("hypervisor", help=(hypervisor.__doc__ or "").strip(), add_help=False)
    # The service's commands import only argparse here; each command imports
    # its heavy libraries (SQLAlchemy, cryptography, ...) when it runs.
    from phalanx import check
    from phalanx.service import admin, ca_cli, serve, submit

    check.add_command(commands, _command)  # check (histories)

    ca_cli.add_commands(commands)  # ca init, ca issue
    admin.add_commands(commands, _command)  # db upgrade, token …, user …
    serve.add_command(commands, _command)
    submit.add_command(commands, _command)
    return top


def _standard_streams() -> None:
    """Started with stdin, stdout or stderr closed (`>&-`): /dev/null in its
    place. Otherwise the next file or socket opened takes the number, and
    what is printed, or what an agent started from here inherits, lands in it."""
    import os

    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115


def main(argv: Sequence[str] | None = None) -> int:
    _standard_streams()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["agent"]:
            return agent(args[1:])
        if args[:1] == ["hypervisor"]:
            return hypervisor(args[1:])
        # `run` is the command run most, often many times a minute: its
        # parser alone, not every command's (a tenth of a second here).
        parsed = parser("run" if args[:1] == ["run"] else None).parse_args(args)
        code: int = parsed.handler(parsed)
        return code
    except Exit as stop:
        return stop.code
    except BrokenPipeError:
        # The reader left early (`phalanx run TREE -l | head`): what it read
        # was right, and a traceback about the rest helps no one. Python
        # would still complain flushing stdout on the way out, so stdout
        # goes to /dev/null first.
        import os

        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        return EXIT_OK
    finally:
        # On the way out the interpreter runs the collector over every object
        # still alive; frozen, they are freed without that last walk (~60 ms
        # after a 500-test tree, where the whole run should cost ~1 s).
        gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
