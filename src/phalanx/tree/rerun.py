"""--last-failed / --failed-first: a run's cases ordered by what the
latest run of the same suite in the results folder left failing."""

from __future__ import annotations

from pathlib import Path

from phalanx.model import Case
from phalanx.report.pastruns import previous_run
from phalanx.tree.select import failed_first as first
from phalanx.tree.select import last_failed as only


def rerun_order(
    cases: list[Case], results: Path, suite: str, *, last_failed: bool, failed_first: bool
) -> tuple[list[Case], str | None]:
    """--last-failed / --failed-first against the suite's latest run in
    `results`; with a note for the user saying what that run was."""
    if not (last_failed or failed_first):
        return cases, None
    option = "--last-failed" if last_failed else "--failed-first"
    previous = previous_run(results, suite)
    if previous is None:
        return cases, f"{option}: no earlier run of {suite} in {results}; running every case"
    failed = previous.failed & {c.name for c in cases}
    if not failed:
        return cases, f"{option}: nothing failed in run {previous.run_id}; running every case"
    ordered = only(cases, failed) if last_failed else first(cases, failed)
    what = "only those" if last_failed else "those first"
    return ordered, (
        f"{option}: {len(failed)} case{'s' if len(failed) != 1 else ''} did not pass in run "
        f"{previous.run_id}; running {what}"
    )
