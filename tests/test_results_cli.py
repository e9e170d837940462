"""`phalanx results list|show|open` over a results folder that real runs
wrote (issue 23, item 7), as `avocado jobs list/show`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_cli import phalanx
from tests.test_selection_cli import tagged_suite


def test_past_runs_are_listed_shown_and_opened(tmp_path: Path) -> None:
    suite = tagged_suite(tmp_path / "repo")
    assert phalanx("run", str(suite), "-k", "flaky", "--plain", cwd=tmp_path).returncode == 1
    assert phalanx("run", str(suite), "-g", "slow", "--plain", cwd=tmp_path).returncode == 0
    # a run killed before its end: its hosts' folders, no results.json
    (tmp_path / "phalanx-results" / "99999999-killed" / "hosts").mkdir(parents=True)
    first, second = sorted(p.name for p in (tmp_path / "phalanx-results").iterdir())[:2]

    listed = phalanx("results", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["run", "suite", "status", "started", "took", "cases"]
    assert lines[1].startswith(first) and "failed" in lines[1] and "1 failed" in lines[1]
    assert lines[2].startswith(second) and "passed" in lines[2] and "1 passed" in lines[2]
    assert "99999999-killed" in lines[3] and "no results.json" in lines[3]

    rows = json.loads(phalanx("results", "list", "--json", cwd=tmp_path).stdout)
    assert [(r["run_id"], r["suite"], r["status"]) for r in rows[:2]] == [
        (first, "s", "failed"),
        (second, "s", "passed"),
    ]
    assert rows[0]["counts"] == {"failed": 1} and rows[0]["report"].endswith("report.html")

    shown = phalanx("results", "show", first[:-3], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"run {first} · suite s · failed" in shown.stdout
    assert "failed    flaky  run failed: h1.phalanx.test (exit code 1)" in shown.stdout
    assert f"report: phalanx-results/{first}/report.html" in shown.stdout
    as_json = json.loads(phalanx("results", "show", second, "--json", cwd=tmp_path).stdout)
    assert as_json["cases"] == [{"name": "login_slow", "status": "passed", "reason": None}]

    ambiguous = phalanx("results", "show", first[:4], cwd=tmp_path)
    assert ambiguous.returncode == 2 and "names 2 runs" in ambiguous.stderr
    missing = phalanx("results", "show", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr

    # `open` hands the report's file:// address to $BROWSER
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {tmp_path}/opened\n')
    browser.chmod(0o755)
    opened = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "results", "open", second],
        cwd=tmp_path,
        env={**os.environ, "BROWSER": str(browser)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert opened.returncode == 0, opened.stderr
    report = tmp_path / "phalanx-results" / second / "report.html"
    assert (tmp_path / "opened").read_text().strip() == report.as_uri()
    killed = phalanx("results", "open", "99999999", cwd=tmp_path)
    assert killed.returncode == 2 and "no report here" in killed.stderr


def test_an_empty_results_folder_says_so(tmp_path: Path) -> None:
    done = phalanx("results", "list", "--results", str(tmp_path / "none"), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == f"no runs in {tmp_path / 'none'}\n"
    assert json.loads(phalanx("results", "list", "--json", cwd=tmp_path).stdout) == []
