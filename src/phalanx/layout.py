"""Where things go in a run folder (`phalanx-results/<run-id>/`). Paths only;
writing them is the store's job."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS_JSON = "results.json"
JUNIT_XML = "junit.xml"
RESULTS_TAP = "results.tap"
REPORT_HTML = "report.html"


def _part(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.@+-]", "_", name)
    return cleaned if cleaned not in ("", ".", "..") else "_"


def stage_dir(case: str | None, stage: str) -> str:
    return f"suite/{_part(stage)}" if case is None else f"cases/{_part(case)}/{_part(stage)}"


def output_path(case: str | None, stage: str, host: str) -> str:
    return f"{stage_dir(case, stage)}/{_part(host)}.log"


def history_path(case: str, suffix: str = "jsonl") -> str:
    """A case's history, from all its hosts: `history.jsonl` (phalanx's
    records) or `history.edn` (Jepsen's)."""
    return f"cases/{_part(case)}/history.{suffix}"


def log_path(case: str | None, stage: str, host: str, source: str) -> str:
    """A collected log file, named after the path it had on the host."""
    return f"{stage_dir(case, stage)}/logs/{_part(host)}/{_part(source.strip('/'))}"


def agent_log(workdir: Path) -> Path:
    """The agent's own log, in its working directory."""
    return workdir / ".phalanx" / "agent.log"


def new_run_id() -> str:
    """A run's id and folder name: sortable by its start time to the
    millisecond (runs follow each other within a second: the latest run,
    `--last-failed`'s previous one, is the last folder by name), unique by
    a random tail."""
    import os
    import time

    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    milliseconds = int(now % 1 * 1000)
    # os.urandom is what secrets.token_hex reads; secrets itself costs ~6 ms to import.
    return f"{stamp}-{milliseconds:03d}{os.urandom(3).hex()}"
