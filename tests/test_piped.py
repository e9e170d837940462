"""`phalanx run … | tee log`: piped output keeps every path whole on its
line, however long, where Rich alone would wrap at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples" / "repo"


def _phalanx(*args: str, cwd: Path, columns: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, start_new_session=True,
    )  # fmt: skip
    return done.stdout


def test_a_failed_hosts_output_path_is_one_unbroken_line(tmp_path: Path) -> None:
    out = _phalanx("run", str(EXAMPLES / "test-suites" / "hello"), cwd=tmp_path)
    (folder,) = (tmp_path / "phalanx-results").iterdir()
    path = f"phalanx-results/{folder.name}/cases/one_host_disagrees/run/cli3.phalanx.test.log"
    assert any(line.rstrip().endswith(f"output: {path}") for line in out.splitlines()), out
    assert "failed (exit code 1)" in out


def test_list_keeps_each_suite_on_one_row_and_columns_still_rules(tmp_path: Path) -> None:
    out = _phalanx("list", str(EXAMPLES), cwd=tmp_path)
    row = next(line for line in out.splitlines() if " hello " in line)
    assert "greet, two_hosts_agree, one_host_disagrees" in row
    assert "minute=30 hour=3 day=* month=* day_of_week=*" in row
    narrow = _phalanx("list", str(EXAMPLES), cwd=tmp_path, columns="60")
    assert max(len(line) for line in narrow.splitlines()) <= 60
