"""A tree run from start to end: the run folder, N in-process workers on the
local host, the pool engine, the reports. No agent processes and no web
server: everything runs here, so that a 1 ms test costs about 1 ms."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from phalanx.engine.pool import Pool
from phalanx.engine.step import Cancellation
from phalanx.events import Fanout, Sink
from phalanx.host.inprocess import InProcessSession
from phalanx.host.process import GroupLedger, become_subreaper, ledger_path
from phalanx.host.sandbox import Sandboxes
from phalanx.model import RunResult, Suite
from phalanx.report.writers import HtmlElsewhere, ReportPaths, write_reports
from phalanx.store.files import RunFolder
from phalanx.tree.histories import TreeHistories

SANDBOX = "sandbox"


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


async def run_tree(
    suite: Suite,
    run_dir: Path,
    *,
    jobs: int,
    sinks: Sequence[Sink] = (),
    stop_on_error: bool = False,
    reports: ReportPaths | None = None,
    cancellation: Cancellation | None = None,
    html: HtmlElsewhere | None = None,
) -> RunResult:
    """Run every case of `suite` (one local host) on `jobs` workers; write
    results.json, junit.xml, results.tap (or to the paths in `reports`) and
    report.html (by `html` when given and able: tree/htmlaside.py)."""
    folder = RunFolder(run_dir)
    # A test's processes that leave its group come back here, to be ended
    # with the test (host.process).
    become_subreaper()
    ledger = GroupLedger(ledger_path(run_dir))
    host = suite.hosts[0].name
    workdir = suite.path.parent if suite.path is not None else Path.cwd()
    sandboxes = Sandboxes(run_dir.resolve() / SANDBOX)  # absolute: tests run in their own folders
    sessions = [InProcessSession(host, workdir, sandboxes, ledger) for _ in range(max(1, jobs))]
    run_id = run_dir.name
    env = {**os.environ, "PHALANX_RUN_ID": run_id, "PHALANX_RESULTS": str(run_dir)}
    histories = TreeHistories(run_dir.resolve(), host)
    engine = Pool(
        suite,
        sessions,
        run_id,
        Fanout([folder, *sinks]),
        env=env,
        stop_on_error=stop_on_error,
        cancellation=cancellation or Cancellation(),
        histories=histories,
    )
    try:
        result = await engine.execute()
    finally:
        # What an interrupted run left behind: every group a test had (each
        # group is ended when its test ends; this catches a cancelled wait).
        ledger.kill_all()
        histories.close()
        folder.close()
        sandboxes.close()
    write_reports(result, run_dir, reports, elsewhere=html)
    return result
