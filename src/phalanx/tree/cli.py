"""`phalanx run TREE`: load, select, list or run an Asterisk-style test tree.

Exit codes as for every run: 0 all passed or skipped, 1 a test failed,
2 bad definitions or usage, 3 an infrastructure error.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from phalanx.exits import EXIT_DEFINITIONS, EXIT_INTERRUPTED, EXIT_OK, for_status
from phalanx.model import Case, RunResult, Suite


@dataclass
class TreeArgs:
    tests: list[str] = field(default_factory=list)
    regex: str | None = None
    tags: list[str] = field(default_factory=list)
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


def _errors(lines: list[str], stream: TextIO) -> int:
    for line in lines:
        stream.write(f"error: {line}\n")
    stream.write(f"{len(lines)} problem{'s' if len(lines) != 1 else ''} found; nothing was run.\n")
    return EXIT_DEFINITIONS


def main(path: Path, args: TreeArgs, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from phalanx.load.errors import DefinitionErrors
    from phalanx.load.tree import load_tree
    from phalanx.tree.select import Selection, SelectionError, repeat, select, shuffle

    try:
        suite = load_tree(path)
    except DefinitionErrors as exc:
        from phalanx.report.terminal import shown_problem

        return _errors([shown_problem(e) for e in exc.errors], err)
    if args.list_tags:
        list_tags(suite.cases, out)
        return EXIT_OK
    selection = Selection(tuple(args.tests), args.regex, tuple(args.tags), tuple(args.exclude_tags))
    try:
        cases = select(suite.cases, selection, suite.name)
        if args.list_tests:
            list_tests(cases, out)
            return EXIT_OK
        cases = repeat(cases, args.number)
    except SelectionError as exc:
        return _errors([str(exc)], err)
    if args.random_order:
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
        out.write(
            f"would run {len(cases)} test{'s' if len(cases) != 1 else ''} on {jobs} workers:\n"
        )
        for case in cases:
            out.write(f"  {case.name}\n")
        return EXIT_OK
    return _run(chosen, args, jobs, out)


def _run(suite: Suite, args: TreeArgs, jobs: int, out: TextIO) -> int:
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
            )

    try:
        result = aio.run(cancellable())
    except KeyboardInterrupt:
        out.write("interrupted\n")
        return EXIT_INTERRUPTED
    summary(result, out, run_dir)
    return for_status(result.status)


def list_tests(cases: list[Case], out: TextIO) -> None:
    """One line per test: R runs, X runs and is expected to fail, S is
    skipped by its config, U has an unmet dependency (named)."""
    from phalanx.host.depends import unmet

    for case in cases:
        options = case.options
        note = ""
        missing = unmet(options.get("dependencies") or [])
        if options.get("skip"):
            letter, note = "S", f"skip: {options['skip']}"
        elif missing:
            letter, note = "U", "unmet: " + ", ".join(missing)
        elif options.get("expected_fail"):
            letter, note = "X", "expected to fail"
        else:
            letter = "R"
        out.write(f"{letter} {case.name}" + (f"  ({note})" if note else "") + "\n")


def list_tags(cases: tuple[Case, ...] | list[Case], out: TextIO) -> None:
    counts = Counter(tag for case in cases for tag in case.tags)
    for tag, count in sorted(counts.items()):
        out.write(f"{tag}  {count} test{'s' if count != 1 else ''}\n")
