"""The `phalanx replay …` line a walks run prints works as printed, from the
run folder and from where the run was started; a pruned walk says it was
pruned; the trace's counts match what ran (issue 23, item 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.kinds.test_walks import make_repo
from tests.test_cli import EXAMPLES, only_run


def typed(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`line` (a `phalanx …` command) as a user pastes it into a shell in
    `cwd`: no PYTHONPATH of theirs."""
    words = line.split()
    assert words[0] == "phalanx"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", *words[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_printed_replay_line_works_from_the_run_folder_and_the_start_folder(
    tmp_path: Path,
) -> None:
    folder = make_repo(tmp_path / "repo", "boom", "[Pick, Pick, Bump, Boom]")
    start = tmp_path / "work"
    start.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(folder), "--plain"],
        cwd=start,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    run_dir = only_run(start)
    junit = ET.parse(run_dir / "junit.xml").getroot()
    text = "\n".join(f.text or "" for f in junit.iter("failure"))
    line = next(ln for ln in text.splitlines() if ln.startswith("replay: phalanx replay"))
    command = line.removeprefix("replay: ")
    for cwd in (start, run_dir):
        replayed = typed(command, cwd)
        assert replayed.returncode == 1, (cwd, replayed.stdout + replayed.stderr)
        assert "ValueError: planted failure" in replayed.stderr
        assert "walk 17 failed" in replayed.stdout
    elsewhere = typed(command, tmp_path)
    assert elsewhere.returncode == 2 and "no such trace here" in elsewhere.stderr
    # The trace keeps the actions module: a copy of it anywhere replays alone.
    (trace,) = run_dir.glob("hosts/*/walks/boom/*.trace.jsonl")
    copy = tmp_path / "elsewhere" / "boom.trace.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(trace.read_bytes())
    alone = typed(f"phalanx replay {copy.name} 17", copy.parent)
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "ValueError: planted failure" in alone.stderr


def test_a_pruned_walk_is_said_to_be_pruned_and_the_trace_counts_what_ran(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(EXAMPLES / "test-suites" / "walks")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (trace,) = only_run(tmp_path).glob("hosts/*/walks/kv_store/*.trace.jsonl")
    lines = [json.loads(ln) for ln in trace.read_text().splitlines()]
    assert lines[0]["planned_walks"] == 72 and "walk_count" not in lines[0]
    assert lines[-1]["totals"] == {
        "walk_count": 36,
        "pruned_count": 36,
        "error_count": 0,
        "cancel_count": 0,
    }
    pruned = next(ln["walk_id"] for ln in lines if ln.get("outcome") == "pruned")
    replayed = typed(f"phalanx replay {trace} {pruned}", tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert f"walk {pruned} of {trace} was pruned" in replayed.stdout
    assert "passed" not in replayed.stdout
