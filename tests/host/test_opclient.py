"""`phalanx-op` as a stage script uses it: real commands perform the
operations on a register kept in a file, the records land in
$PHALANX_HISTORY, and `phalanx check` judges them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def op(history: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PHALANX_HISTORY": str(history), "PHALANX_HOSTNAME": "h1"}
    return subprocess.run(
        [str(BIN / "phalanx-op"), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def records(history: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in history.read_text().splitlines()]


def alive(pid: int) -> bool:
    """Running (a killed process nobody reaped yet is a zombie, not alive)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def check(history: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx", "check", "--model", "register", str(history)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_writes_and_reads_through_commands_are_recorded_and_check_valid(tmp_path: Path) -> None:
    history, store = tmp_path / "history.jsonl", tmp_path / "x"
    write = op(
        history,
        "--key",
        "x",
        "--process",
        "c1",
        "write",
        "3",
        "--",
        "sh",
        "-c",
        f"echo 3 > {store}",
    )
    read = op(history, "--key", "x", "--process", "c2", "read", "--", "cat", str(store))
    assert (write.returncode, read.returncode, read.stdout) == (0, 0, "3\n")
    got = records(history)
    assert [(r["process"], r["type"], r["f"], r["value"]) for r in got] == [
        ("h1/c1", "invoke", "write", 3),
        ("h1/c1", "ok", "write", 3),
        ("h1/c2", "invoke", "read", None),
        ("h1/c2", "ok", "read", 3),
    ]
    assert all(isinstance(r["time"], float) for r in got)
    assert check(history).returncode == 0


def test_a_read_of_an_overwritten_value_fails_the_check(tmp_path: Path) -> None:
    history, store = tmp_path / "history.jsonl", tmp_path / "x"
    op(history, "--key", "x", "write", "1", "--", "sh", "-c", f"echo 1 > {store}")
    op(history, "--key", "x", "write", "2", "--", "sh", "-c", f"echo 2 > {store}")
    # A lagging replica: answers with the first value.
    op(history, "--key", "x", "read", "--", "echo", "1")
    done = check(history)
    assert done.returncode == 1
    assert "history not linearizable on key x" in done.stdout


def test_exit_1_is_fail_and_other_statuses_info_and_the_status_is_passed_on(
    tmp_path: Path,
) -> None:
    history = tmp_path / "history.jsonl"
    failed = op(history, "--key", "x", "cas", "1:2", "--", "sh", "-c", "exit 1")
    lost = op(history, "--key", "x", "write", "5", "--", "sh", "-c", "exit 7")
    assert (failed.returncode, lost.returncode) == (1, 7)
    got = records(history)
    assert [(r["type"], r["value"]) for r in got] == [
        ("invoke", [1, 2]),
        ("fail", [1, 2]),
        ("invoke", 5),
        ("info", 5),
    ]


def test_a_timeout_kills_the_command_s_whole_group_and_records_info(tmp_path: Path) -> None:
    history, pidfile = tmp_path / "history.jsonl", tmp_path / "pid"
    done = op(
        history,
        "--timeout",
        "0.5",
        "read",
        "--",
        "sh",
        "-c",
        f"sleep 60 & echo $! > {pidfile}; wait",
    )
    assert done.returncode == 124
    assert records(history)[-1]["type"] == "info"
    assert not alive(int(pidfile.read_text()))


def test_bad_usage_exits_2_saying_why(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    assert op(history, "cas", "12", "--", "true").stderr.strip() == (
        "phalanx-op: cas takes OLD:NEW, not '12'"
    )
    assert op(history, "write", "1", "true").returncode == 2
    assert not history.exists()


def test_a_read_that_prints_nothing_read_an_unset_register(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    op(history, "--key", "y", "read", "--", "true")
    op(history, "--key", "y", "read", "--", "echo", "some text")
    assert [r["value"] for r in records(history) if r["type"] == "ok"] == [None, "some text"]
    assert check(history).returncode == 1  # "some text" was never written
