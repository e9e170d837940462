"""`python -m phalanx.host.leftovers PGID WORKDIR`, as a remote provider
runs it on a host after its agent's end: what the agent left is ended and
its folders are gone. Real process groups."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from phalanx.host.process import ledger_path
from phalanx.host.workdir import WORKDIR_MARK, socket_dir
from tests.eventually import eventually
from tests.processes import alive, gone

TIMEOUT = 30


def leftovers(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx.host.leftovers", *args],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip


def sleeper(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A `sleep` in a process group of its own."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True, env=env)


def test_the_agents_group_its_stages_groups_and_marked_strays_end_and_its_folders_go(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "agent"
    ledger = ledger_path(workdir)
    ledger.parent.mkdir(parents=True)
    (workdir / "hosts.txt").write_text("kept by the stages\n")
    sockets = socket_dir(workdir)
    sockets.mkdir()
    agent, stage = sleeper(), sleeper()
    # a process a stage left that escaped every group, but carries the mark
    stray = sleeper({**os.environ, WORKDIR_MARK: str(workdir)})
    # one of another agent's folders: not this one's to end
    other = sleeper({**os.environ, WORKDIR_MARK: str(tmp_path / "another")})
    ledger.write_text(f"{stage.pid}\n")
    started = [agent, stage, stray, other]
    try:
        done = leftovers(str(agent.pid), str(workdir))
        assert done.returncode == 0, done.stderr
        assert agent.wait(TIMEOUT) == -9 and stage.wait(TIMEOUT) == -9  # groups: SIGKILL
        assert stray.wait(TIMEOUT) < 0  # ended by a signal (SIGTERM first, then SIGKILL)
        assert not workdir.exists()
        assert not sockets.exists()
        assert other.poll() is None and alive(other.pid)
    finally:
        for process in started:
            process.kill()
            process.wait(TIMEOUT)


def test_a_workdir_already_gone_and_an_agent_already_ended_are_no_error(tmp_path: Path) -> None:
    ended = sleeper()
    ended.kill()
    ended.wait(TIMEOUT)
    assert gone(ended.pid)
    done = leftovers(str(ended.pid), str(tmp_path / "never-made"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_stale_ledger_entry_is_skipped_and_the_rest_still_ends(tmp_path: Path) -> None:
    workdir = tmp_path / "agent"
    ledger = ledger_path(workdir)
    ledger.parent.mkdir(parents=True)
    ended, stage = sleeper(), sleeper()
    ended.kill()
    ended.wait(TIMEOUT)
    ledger.write_text(f"{ended.pid}\nnot-a-pid\n{stage.pid}\n")
    try:
        done = leftovers("0", str(workdir))  # no agent group to end (0: none)
        assert done.returncode == 0, done.stderr
        assert stage.wait(TIMEOUT) == -9
        eventually(lambda: not workdir.exists(), within=TIMEOUT, what="the workdir removed")
    finally:
        stage.kill()
        stage.wait(TIMEOUT)


def test_wrong_arguments_say_the_usage_and_exit_2(tmp_path: Path) -> None:
    for args in ((), (str(tmp_path),), ("abc", str(tmp_path)), ("1", "2", "3")):
        done = leftovers(*args)
        assert done.returncode == 2, args
        assert "usage: python -m phalanx.host.leftovers PGID WORKDIR" in done.stderr
    assert tmp_path.exists()  # nothing was removed
