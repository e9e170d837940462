"""`phalanx run TREE`: load, select, list or run an Asterisk-style test tree.

Exit codes as for every run: 0 all passed or skipped, 1 a test failed,
2 bad definitions or usage, 3 an infrastructure error, 130 cancelled.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from phalanx.exits import EXIT_DEFINITIONS, EXIT_INTERRUPTED, EXIT_OK, for_status
from phalanx.model import Case, RunResult, Suite

if TYPE_CHECKING:
    from phalanx.host.depends import Checker as Checks
    from phalanx.load.testconfig import GlobalConfig
    from phalanx.load.tree import TreeTest
    from phalanx.tree.htmlaside import HtmlAside


@dataclass
class TreeArgs:
    tests: list[str] = field(default_factory=list)
    regexes: list[str] = field(default_factory=list)  # --test-regex: any of them
    tags: list[str] = field(default_factory=list)  # -g: any of them
    exclude_tags: list[str] = field(default_factory=list)
    list_tests: bool = False
    list_tags: bool = False
    dry_run: bool = False
    number: int = 1
    random_order: bool = False
    seed: int | None = None
    stop_on_error: bool = False
    inactivity: float | None = None  # --timeout
    jobs: int | None = None
    results: Path = Path("phalanx-results")
    run_id: str | None = None
    json: Path | None = None
    junit: Path | None = None
    tap: Path | None = None
    verbose: bool = False
    cancel_grace: float = 30.0  # after Ctrl-C or SIGTERM, for the running tests' finalize
    # runtests.py's options
    skip_regexes: list[str] = field(default_factory=list)  # -T
    list_terse: bool = False
    cleanup: bool = False  # -c: remove the sandboxes of passing tests
    keep_core: bool = False  # -k: accepted; phalanx removes no test's files
    valgrind: bool = False  # -V: VALGRIND_ENABLE=true for the tests
    pcap: bool = False  # PCAP=yes for the tests
    keep_full_logs: bool = False  # accepted; phalanx keeps every test's output
    testsuite_config: Path | None = None
    asterisk: Path | None = None  # the asterisk binary the `asterisk:` checks ask
    python: Path | None = None  # the interpreter `python:` checks and tests use
    keywords: str | None = None  # -k EXPR, as pytest's
    last_failed: bool = False
    failed_first: bool = False


def _errors(lines: list[str], stream: TextIO) -> int:
    for line in lines:
        stream.write(f"error: {line}\n")
    stream.write(f"{len(lines)} problem{'s' if len(lines) != 1 else ''} found; nothing was run.\n")
    return EXIT_DEFINITIONS


def main(path: Path, args: TreeArgs, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    # What is made until the tests start (modules, the loaded tree, the
    # selection) lives as long as the run: the cyclic collector would walk
    # it again and again for nothing (about a tenth of a small run's CPU).
    # It is off until then, and what was made is frozen out of its way.
    gc.disable()
    html = _html_aside(args)
    try:
        return _main(path, args, out, err, html)
    finally:
        if html is not None:
            html.close()
        gc.enable()


def _html_aside(args: TreeArgs) -> HtmlAside | None:
    """The helper that writes report.html beside the run (tree/htmlaside.py),
    forked first, before this process has threads; none for a listing."""
    if args.list_tests or args.list_tags or args.list_terse or args.dry_run:
        return None
    from phalanx.tree.htmlaside import HtmlAside

    return HtmlAside.start()


def _main(path: Path, args: TreeArgs, out: TextIO, err: TextIO, html: HtmlAside | None) -> int:
    from phalanx.load.errors import DefinitionErrors
    from phalanx.load.tree import load_tree, scan
    from phalanx.load.treeroot import tree_folder
    from phalanx.report.terminal import shown_problem
    from phalanx.tree.select import Selection, SelectionError, repeat, select, shuffle
    from phalanx.tree.suiteconfig import apply, read_global

    folder = tree_folder(path)
    try:
        if folder is None:
            suite = load_tree(path)  # says what is missing
        found = scan(folder) if folder is not None else None
        config = read_global(folder, args.testsuite_config) if folder is not None else None
    except DefinitionErrors as exc:
        return _errors([shown_problem(e) for e in exc.errors], err)
    assert found is not None and config is not None and folder is not None
    for note in found.notes:
        err.write(f"note: {shown_problem(note)}\n")
    for warning in config.warnings:
        err.write(f"warning: {warning}\n")
    from phalanx.host.depends import Checker
    from phalanx.tree.suiteconfig import settings, suite_env

    given = settings(folder, args.asterisk, args.python, remote=config.remote)
    checks = Checker.shared(given)
    checks.prefetch(d for t in found.tests for d in t.config.dependencies)
    env = {**suite_env(folder, given.get("python")), **_environment(args)}
    suite = apply(load_tree(folder, found.tests), config, env, given)
    if args.list_tags:
        list_tags(suite.cases, out)
        if not (args.list_tests or args.list_terse):
            return EXIT_OK
    selection = Selection(
        tuple(args.tests),
        tuple(args.regexes),
        tuple(args.tags),
        tuple(args.exclude_tags),
        tuple(args.skip_regexes),
        args.keywords,
    )
    try:
        cases = select(suite.cases, selection, suite.name)
        chosen_names = {c.name for c in cases}
        _broken([t for t in found.tests if t.broken and t.name in chosen_names], args, err)
        if args.last_failed or args.failed_first:  # reading past runs: only then
            from phalanx.tree.rerun import rerun_order

            cases, rerun_note = rerun_order(
                cases,
                args.results,
                suite.name,
                last_failed=args.last_failed,
                failed_first=args.failed_first,
            )
            if rerun_note is not None:
                err.write(rerun_note + "\n")
        if args.list_tests or args.list_terse:
            if args.list_tests and args.json is not None:
                list_json(cases, checks, out, args.json)
            elif args.list_tests:
                _conditions(config, err)
                list_tests(cases, checks, out)
            if args.list_terse:
                # runtests.py numbers and lists every test -t and the regexes
                # leave; -g and -G decide only which of them run.
                untagged = replace(selection, tags=(), exclude_tags=())
                list_terse(select(suite.cases, untagged, suite.name), checks, out)
            return EXIT_OK
        cases = repeat(cases, args.number)
    except SelectionError as exc:
        return _errors([str(exc)], err)
    if args.random_order:
        import random

        seed = args.seed if args.seed is not None else random.randrange(2**32)
        cases = shuffle(cases, seed)
        out.write(f"random order, seed {seed} (--seed {seed} repeats it)\n")
    if args.inactivity is not None:
        if args.inactivity <= 0:
            return _errors(["--timeout must be more than zero seconds"], err)
        cases = [replace(c, options={**c.options, "inactivity": args.inactivity}) for c in cases]
    from phalanx.tree.run import default_jobs

    jobs = args.jobs if args.jobs is not None else default_jobs()
    if jobs < 1:
        return _errors(["-j must be at least 1"], err)
    chosen = replace(suite, cases=tuple(cases))
    if args.dry_run:
        runnable = [c for c in cases if _status(c, checks)[0] in "RX"]
        out.write(
            f"would run {len(runnable)} test{'s' if len(runnable) != 1 else ''} on {jobs} workers"
            f" ({len(cases) - len(runnable)} skipped):\n"
        )
        for case in runnable:
            out.write(f"  {case.name}\n")
        return EXIT_OK
    return _run(chosen, args, jobs, out, html)


def _broken(broken: list[TreeTest], args: TreeArgs, err: TextIO) -> None:
    """The selected tests that cannot be read: counted, and named with -v."""
    from phalanx.report.terminal import shown_problem

    if not broken:
        return
    err.write(
        f"warning: {len(broken)} test{'s' if len(broken) != 1 else ''} cannot be read "
        "and will be skipped, each with its reason"
        + (":\n" if args.verbose else " (-v lists them)\n")
    )
    if args.verbose:
        for test in broken:
            for problem in test.broken:
                err.write(f"  {test.name}: {shown_problem(problem)}\n")


def _environment(args: TreeArgs) -> dict[str, str]:
    """What runtests.py sets for every test, from its options."""
    env: dict[str, str] = {}
    if args.testsuite_config is not None:
        env["TESTSUITE_CONFIG"] = str(args.testsuite_config.resolve())
    if args.valgrind:
        env["VALGRIND_ENABLE"] = "true"
    if args.pcap:
        env["PCAP"] = "yes"
    return env


def _conditions(config: GlobalConfig, err: TextIO) -> None:
    if config.file is None:
        return
    where = f"{config.file.name} ({config.configuration or 'no test-configuration'})"
    if config.excluded:
        err.write(f"{where}: {len(config.excluded)} exclude-tests entries\n")
    if config.conditions:
        used = ", ".join(config.test_conditions) or "none"
        err.write(
            f"{where}: conditions defined: {', '.join(config.conditions)}; in force: {used}"
            " (phalanx does not evaluate them)\n"
        )


def _run(suite: Suite, args: TreeArgs, jobs: int, out: TextIO, html: HtmlAside | None) -> int:
    from phalanx import aio
    from phalanx.engine.step import Cancellation
    from phalanx.layout import new_run_id
    from phalanx.report.writers import ReportPaths
    from phalanx.tree.console import TreeConsole, summary
    from phalanx.tree.run import run_tree

    run_dir = args.results / (args.run_id or new_run_id())
    console = TreeConsole(out, verbose=args.verbose, run_dir=run_dir)
    cancellation = Cancellation()

    def cancelling(reason: str) -> None:
        sys.stderr.write(f"{reason}: stopping the run (a second Ctrl-C stops at once)\n")
        sys.stderr.flush()

    async def cancellable() -> RunResult:
        with aio.interrupts(
            cancellation.cancel, cancellation.abort, args.cancel_grace, on_first=cancelling
        ):
            return await run_tree(
                suite,
                run_dir,
                jobs=jobs,
                sinks=[console],
                stop_on_error=args.stop_on_error,
                reports=ReportPaths(json=args.json, junit=args.junit, tap=args.tap),
                cancellation=cancellation,
                html=html,
            )

    gc.freeze()
    gc.enable()
    try:
        result = aio.run(cancellable())
    except KeyboardInterrupt:
        out.write("interrupted\n")
        return EXIT_INTERRUPTED
    if args.cleanup:
        _clean_up(result, run_dir)
    summary(result, out, run_dir)
    return for_status(result.status)


def _clean_up(result: RunResult, run_dir: Path) -> None:
    """-c: the sandboxes of the tests that passed go; a failure's stay to be
    looked at (runtests.py removes a passing test's run folder)."""
    import shutil

    from phalanx.host.sandbox import sandbox_name
    from phalanx.model import Status
    from phalanx.tree.run import SANDBOX

    for case in result.cases:
        if case.status is Status.PASSED:
            shutil.rmtree(run_dir / SANDBOX / sandbox_name(case.name), ignore_errors=True)
    with contextlib.suppress(OSError):
        (run_dir / SANDBOX).rmdir()


def _status(case: Case, checks: Checks) -> tuple[str, str]:
    """R runs, X runs and is expected to fail, S is skipped (by its config,
    the suite's exclude-tests, or because it is broken), U has an unmet
    dependency (named)."""
    options = case.options
    if options.get("skip"):
        return "S", f"skip: {options['skip']}"
    missing = checks.unmet(options.get("dependencies") or [])
    if missing:
        return "U", "unmet: " + ", ".join(missing)
    if options.get("expected_fail"):
        return "X", "expected to fail"
    return "R", ""


def list_tests(cases: list[Case], checks: Checks, out: TextIO) -> None:
    """One line per test: a letter (see `_status`), the name, the note."""
    for case in cases:
        letter, note = _status(case, checks)
        note = " ".join(note.split())  # one line per test, whatever a reason holds
        out.write(f"{letter} {case.name}" + (f"  ({note})" if note else "") + "\n")


def list_json(cases: list[Case], checks: Checks, out: TextIO, path: Path | None = None) -> None:
    """`--list --json`: the suites' listing fields, and each test's letter
    and note as `list_tests` prints them."""
    from phalanx.report import listing

    rows = []
    for case in cases:
        letter, note = _status(case, checks)
        rows.append({**listing.case_row(case), "status": letter, "note": " ".join(note.split())})
    listing.write_json(rows, out, path)


def list_terse(cases: list[Case], checks: Checks, out: TextIO) -> None:
    """runtests.py's `--list-terse`: `nnnn F name [unmet,unmet]`, F being
    E (enabled), S (skipped) or D (a dependency is not met)."""
    for number, case in enumerate(cases, 1):
        flag, unmet = "E", ""
        if case.options.get("skip"):
            flag = "S"
        else:
            missing = checks.unmet_names(case.options.get("dependencies") or [])
            if missing:
                flag, unmet = "D", " " + ",".join(missing)
        out.write(f"{number:04d} {flag} {case.name}{unmet}\n")


def list_tags(cases: tuple[Case, ...] | list[Case], out: TextIO) -> None:
    counts = Counter(tag for case in cases for tag in case.tags)
    for tag, count in sorted(counts.items()):
        out.write(f"{tag}  {count} test{'s' if count != 1 else ''}\n")
