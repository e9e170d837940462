"""Report files get the mode the user's umask gives any new file, as the
run's own output files do: a CI step running as another user can read
them when the umask lets it, and nobody can when it does not."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx import layout

EXAMPLES = Path(__file__).parents[2] / "examples" / "repo"
REPORTS = (layout.RESULTS_JSON, layout.JUNIT_XML, layout.RESULTS_TAP, layout.REPORT_HTML)


def _run_with_umask(cwd: Path, umask: int) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(EXAMPLES / "test-suites" / "hello"),
         "-t", "greet", "--plain"],
        cwd=cwd, capture_output=True, text=True, timeout=120, umask=umask,
        start_new_session=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = (cwd / "phalanx-results").iterdir()
    return folder


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_reports_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    folder = _run_with_umask(tmp_path, umask)
    modes = {name: stat.S_IMODE(os.stat(folder / name).st_mode) for name in REPORTS}
    assert modes == dict.fromkeys(REPORTS, mode)
    outputs = [stat.S_IMODE(p.stat().st_mode) for p in folder.glob("cases/*/*/*.log")]
    assert outputs and set(outputs) == {mode}  # the same as the files the run appends to
    assert not list(folder.glob(".*.tmp"))  # no temporary file left behind
