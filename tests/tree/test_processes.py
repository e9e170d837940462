"""Timeouts, hung tests and their children, parallel workers, --stop-on-error:
real processes, checked from the outside."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.eventually import eventually
from tests.processes import gone, run_folder, wait_for
from tests.tree.helpers import make_tree, phalanx, reasons, results, statuses

PLAIN = "testinfo:\n    summary: t\n"


def test_a_silent_test_is_killed_by_the_inactivity_timeout(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "silent": (PLAIN, "#!/bin/sh\necho started\nexec sleep 60\n"),
            # Prints every 0.2 s for 1.6 s: never silent for a whole second.
            "chatty": (PLAIN, "#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.2; done\n"),
        },
    )
    started = time.monotonic()
    done = phalanx("tests", "--timeout", "1", "-j", "2", cwd=tmp_path)
    assert time.monotonic() - started < 15
    assert done.returncode == 1, done.stdout + done.stderr
    data = results(tmp_path)
    assert statuses(data) == {"tests/silent": "timeout", "tests/chatty": "passed"}
    assert reasons(data)["tests/silent"] == (
        "run timeout: localhost (no output for 1s; its process group was killed)"
    )


def test_a_hung_test_is_killed_with_its_children(tmp_path: Path) -> None:
    hung = (
        '#!/bin/sh\nsleep 300 &\necho $! > "$PHALANX_SANDBOX/grandchild.pid"\necho spawned\nwait\n'
    )
    make_tree(tmp_path, {"hung": ("properties:\n    timeout: 1\n", hung)})
    done = phalanx("tests", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    data = results(tmp_path)
    assert statuses(data) == {"tests/hung": "timeout"}
    # the limit and where it was set, said once
    assert "timed out after 1 s (case `tests/hung`'s timeout)" in done.stdout
    (run,) = (tmp_path / "phalanx-results").iterdir()
    pid = int((run / "sandbox" / "tests_hung" / "grandchild.pid").read_text())
    assert gone(pid), f"grandchild {pid} survived its test"


def test_processes_a_passing_test_leaves_behind_are_ended(tmp_path: Path) -> None:
    leaves = 'sleep 300 &\necho $! > "$PHALANX_SANDBOX/daemon.pid"\nexit 0\n'
    make_tree(tmp_path, {"leaves": (PLAIN, "#!/bin/sh\n" + leaves)})
    assert phalanx("tests", cwd=tmp_path).returncode == 0
    (run,) = (tmp_path / "phalanx-results").iterdir()
    assert gone(int((run / "sandbox" / "tests_leaves" / "daemon.pid").read_text()))


def test_workers_run_tests_side_by_side_and_output_stays_apart(tmp_path: Path) -> None:
    # Each test waits (up to 20 s) until all four have started: run one
    # after another, the first would give up and fail.
    met = tmp_path / "met"
    met.mkdir()
    script = (
        f"#!/bin/sh\ntouch {met}/{{name}}\n"
        f'for i in $(seq 400); do [ "$(ls {met} | wc -l)" -ge 4 ] && break; sleep 0.05; done\n'
        f'[ "$(ls {met} | wc -l)" -ge 4 ] || exit 1\n'
        'for i in 1 2 3 4 5; do echo "{name} line $i"; sleep 0.05; done\n'
    )
    make_tree(tmp_path, {n: (PLAIN, script.format(name=n)) for n in ("a", "b", "c", "d")})
    done = phalanx("tests", "-j", "4", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = results(tmp_path)
    (run,) = (tmp_path / "phalanx-results").iterdir()
    for case in data["cases"]:
        name = case["name"].rsplit("/", 1)[1]
        text = (run / case["stages"][0]["hosts"][0]["output"]).read_text()
        assert text == "".join(f"{name} line {i}\n" for i in range(1, 6))
    # On the console, each test's output is one block under its own line.
    lines = done.stdout.splitlines()
    for name in "abcd":
        at = next(
            i
            for i, line in enumerate(lines)
            if line.endswith(f"tests/{name}") or f"tests/{name} " in line
        )
        assert lines[at + 1 : at + 6] == [f"    | {name} line {i}" for i in range(1, 6)]


def test_stop_on_error_runs_nothing_after_the_first_failure(tmp_path: Path) -> None:
    # Names in runtests.py's order (sorted), which is the order they run in.
    make_tree(
        tmp_path,
        {
            "first": (PLAIN, "#!/bin/sh\nexit 0\n"),
            "second": (PLAIN, "#!/bin/sh\nexit 1\n"),
            "third": (PLAIN, "#!/bin/sh\nexit 0\n"),
        },
    )
    done = phalanx("tests", "-j", "1", "--stop-on-error", cwd=tmp_path)
    assert done.returncode == 1
    data = results(tmp_path)
    assert statuses(data) == {
        "tests/first": "passed",
        "tests/second": "failed",
        "tests/third": "skipped",
    }
    assert "--stop-on-error after tests/second failed" in (reasons(data)["tests/third"] or "")


def test_each_test_has_its_own_sandbox_and_runs_from_the_tree_root(tmp_path: Path) -> None:
    script = '#!/bin/sh\npwd\necho "$PHALANX_SANDBOX"\ntouch "$TMPDIR/mine"\nls "$TMPDIR"\n'
    make_tree(tmp_path, {"x": (PLAIN, script), "y": (PLAIN, script)})
    assert phalanx("tests", "-j", "2", "-v", cwd=tmp_path).returncode == 0
    (run,) = (tmp_path / "phalanx-results").iterdir()
    for name in ("x", "y"):
        text = (run / "cases" / f"tests_{name}" / "run" / "localhost.log").read_text().split()
        assert text == [str(tmp_path), str(run.resolve() / "sandbox" / f"tests_{name}"), "mine"]


def test_sandboxes_start_empty_and_only_those_with_files_are_kept(tmp_path: Path) -> None:
    # Empty sandboxes are handed on to later tests: each must still start
    # empty, carry its own test's name, and never hold another test's files.
    check = '#!/bin/sh\necho "$PHALANX_SANDBOX"; ls -A "$PHALANX_SANDBOX" | wc -l\n'
    write = check + 'echo data > "$TMPDIR/kept"\n'
    tests: dict[str, tuple[str, str | None]] = {
        f"t{i}": (PLAIN, write if i % 3 == 0 else check) for i in range(9)
    }
    make_tree(tmp_path, tests)
    assert phalanx("tests", "-j", "2", "-v", cwd=tmp_path).returncode == 0
    (run,) = (tmp_path / "phalanx-results").iterdir()
    sandbox_root = run.resolve() / "sandbox"
    for name in tests:
        where, count = (
            (run / "cases" / f"tests_{name}" / "run" / "localhost.log").read_text().split()
        )
        assert (where, count) == (str(sandbox_root / f"tests_{name}"), "0")
    assert sorted(p.name for p in sandbox_root.iterdir()) == ["tests_t0", "tests_t3", "tests_t6"]
    assert all(
        (sandbox_root / n / "kept").read_text() == "data\n" for n in ("tests_t0", "tests_t3")
    )


def test_broken_definitions_name_file_and_line_and_only_those_tests_are_skipped(
    tmp_path: Path,
) -> None:
    make_tree(
        tmp_path, {"ok": (PLAIN, "#!/bin/sh\nexit 0\n"), "good": (PLAIN, "#!/bin/sh\nexit 0\n")}
    )
    tree = tmp_path / "tests"
    (tree / "tests.yaml").write_text(
        "tests:\n    - test: 'ok'\n    - test: 'missing'\n    - test: 'good'\n"
    )
    (tree / "ok" / "test-config.yaml").write_text("properties:\n    expected-result: maybe\n")
    done = phalanx("tests", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # Named from where the user stands, as every message names files.
    assert "tests/tests.yaml:3: tests.1.test: no folder 'missing'" in done.stderr
    assert "tests/ok/test-config.yaml:2: properties.expected-result:" in done.stderr
    data = results(tmp_path)
    assert statuses(data) == {
        "tests/good": "passed",
        "tests/missing": "skipped",
        "tests/ok": "skipped",
    }
    why = reasons(data)
    assert "broken: tests/tests.yaml:3: tests.1.test: no folder 'missing'" in (
        why["tests/missing"] or ""
    )
    assert "broken: tests/ok/test-config.yaml:2: properties.expected-result:" in (
        why["tests/ok"] or ""
    )


def _start_tree(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "phalanx.cli", "run", "tests", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stderr_until(proc: subprocess.Popen[str], text: str, within: float = 30) -> str:
    """What `proc` wrote on stderr up to `text` (read without blocking)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    said = b""

    def seen() -> bool:
        nonlocal said
        with contextlib.suppress(BlockingIOError):
            said += os.read(fd, 65536) or b""
        return text.encode() in said

    try:
        eventually(seen, within=within, what=f"{text!r} on stderr")
    finally:
        os.set_blocking(fd, True)
    return said.decode(errors="replace")


HANGS = (
    '#!/bin/sh\n{trap}sleep 300 &\necho $! > "$PHALANX_RESULTS/child.pid"\n'
    'touch "$PHALANX_RESULTS/running"\nwait\n'
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_cancels_a_tree_run_and_still_writes_every_report(
    tmp_path: Path, sig: signal.Signals
) -> None:
    tests: dict[str, tuple[str, str | None]] = {
        "fast": (PLAIN, "#!/bin/sh\nexit 0\n"),
        "hangs": (PLAIN, HANGS.format(trap="")),
        **{f"never{i}": (PLAIN, '#!/bin/sh\ntouch "$PHALANX_RESULTS/never"\n') for i in range(3)},
    }
    make_tree(tmp_path, tests)
    proc = _start_tree(tmp_path, "-j", "1")
    try:
        run = run_folder(tmp_path, proc)
        wait_for(run / "running", proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    data = results(tmp_path)
    assert data["status"] == "cancelled" and data["reason"] == f"cancelled by {sig.name}"
    assert statuses(data) == {
        "tests/fast": "passed",
        "tests/hangs": "cancelled",
        **{f"tests/never{i}": "cancelled" for i in range(3)},
    }
    assert reasons(data)["tests/never0"] == f"cancelled by {sig.name}"
    assert (run / "junit.xml").is_file() and (run / "results.tap").is_file()
    assert "tests/hangs" in (run / "report.html").read_text()
    assert not (run / "never").exists()
    assert gone(int((run / "child.pid").read_text()))


def test_a_second_signal_stops_a_tree_run_at_once_and_the_record_says_sigkill(
    tmp_path: Path,
) -> None:
    # The test ignores SIGTERM: the first signal's cancel would take the
    # kill grace; the second stops the run without waiting for anything.
    make_tree(tmp_path, {"stubborn": (PLAIN, HANGS.format(trap="trap '' TERM\n"))})
    proc = _start_tree(tmp_path)
    try:
        run = run_folder(tmp_path, proc)
        wait_for(run / "running", proc)
        proc.send_signal(signal.SIGINT)
        # The second signal once the first was taken (two at once would be one).
        said = stderr_until(proc, "stopping the run")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        err = said + err
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    data = results(tmp_path)
    assert data["status"] == "cancelled" and data["reason"] == "cancelled by SIGINT"
    (host,) = data["cases"][0]["stages"][0]["hosts"]
    assert host["status"] == "cancelled"
    assert host["signal"] == 9 and host["exit_code"] == 137
    assert gone(int((run / "child.pid").read_text()))


def test_a_tree_test_s_escapees_end_with_the_test(tmp_path: Path) -> None:
    leaves = (
        "#!/bin/bash\n"
        'setsid sleep 300 & echo $! > "$PHALANX_RESULTS/escapee.pid"\n'
        "(setsid sh -c 'sleep 300 & echo $! > \"$PHALANX_RESULTS/double.pid\"; wait' &)\n"
        'while [ ! -s "$PHALANX_RESULTS/double.pid" ]; do sleep 0.05; done\n'
        "exit 0\n"
    )
    # Runs after `leaves` on the one worker: its escapees must be gone by then.
    check = (
        "#!/bin/bash\n"
        "for name in escapee double; do\n"
        '  pid=$(cat "$PHALANX_RESULTS/$name.pid")\n'
        "  if kill -0 $pid 2>/dev/null && ! grep -q '^State:.*Z' /proc/$pid/status; then\n"
        '    echo "$name $pid alive"; exit 1\n'
        "  fi\n"
        "done\n"
    )
    make_tree(tmp_path, {"leaves": (PLAIN, leaves), "check": (PLAIN, check)})
    done = phalanx("tests", "-j", "1", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert statuses(results(tmp_path)) == {"tests/leaves": "passed", "tests/check": "passed"}
