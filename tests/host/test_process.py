"""How the agent finds and ends what stages leave behind: processes by the
mark in their environment, stopped ones, a stage's process group, a case's
scope, the ledger of groups an agent started, and orphans re-parented to
it as a subreaper. Real processes, each ended by the test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.host.process import (
    SCOPE_MARK,
    GroupLedger,
    end_processes,
    end_scope,
    kill_group,
    marked,
    read_ledger,
    scope_left,
    stopped,
)
from tests.eventually import eventually
from tests.processes import alive, gone

TIMEOUT = 30


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The processes a test starts: each group killed at its end."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(TIMEOUT)


def start(
    started: list[subprocess.Popen[bytes]], script: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`sh -c script` in a session (and so a process group) of its own."""
    process = subprocess.Popen(
        ["sh", "-c", script], start_new_session=True, env={**os.environ, **(env or {})}
    )
    started.append(process)
    return process


def test_a_stopped_process_is_told_from_a_running_one(
    started: list[subprocess.Popen[bytes]],
) -> None:
    process = start(started, "exec sleep 300")
    os.kill(process.pid, signal.SIGSTOP)
    eventually(lambda: stopped(process.pid), within=TIMEOUT, what="stopped")
    os.kill(process.pid, signal.SIGCONT)
    eventually(lambda: not stopped(process.pid), within=TIMEOUT, what="running again")
    assert not stopped(2**22 + 1)  # no such process: not stopped


def test_processes_are_found_by_their_mark_exactly_or_by_its_prefix(
    started: list[subprocess.Popen[bytes]],
) -> None:
    mine = start(started, "exec sleep 300", {"PHALANX_TEST_MARK": "run-7/case-a"})
    other = start(started, "exec sleep 300", {"PHALANX_TEST_MARK": "run-7/case-b"})
    eventually(
        lambda: (
            mine.pid in marked("PHALANX_TEST_MARK", "run-7/case-a")
            and other.pid in marked("PHALANX_TEST_MARK", "run-7/case-b")
        ),
        within=TIMEOUT,
        what="both marked processes found",
    )  # (an environment is readable once its process has exec'd)
    assert marked("PHALANX_TEST_MARK", "run-7/case-a") == [mine.pid]
    assert sorted(marked("PHALANX_TEST_MARK", "run-7/", prefix=True)) == sorted(
        [mine.pid, other.pid]
    )
    assert marked("PHALANX_TEST_MARK", "run-7/") == []  # not a prefix match unless asked
    assert marked("PHALANX_TEST_MARK", "run-7/case-a", uid=os.getuid() + 1) == []


async def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(
    started: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    termed, ready = tmp_path / "termed", tmp_path / "ready"
    stubborn = start(
        started, f"trap 'echo > {termed}' TERM; echo > {ready}; while :; do sleep 0.05; done"
    )
    eventually(ready.exists, within=TIMEOUT, what="its trap set")
    # The grace is what it has to say it was asked; it never ends by itself.
    await end_processes([stubborn.pid], grace=3)
    assert gone(stubborn.pid, TIMEOUT)
    assert termed.exists()  # it was asked first


async def test_a_groups_end_takes_every_process_in_it(
    started: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    group = start(started, f"sleep 300 & echo $! > {pids}; sleep 300 & wait")
    eventually(pids.exists, within=TIMEOUT, what="the group's children started")
    child = int(pids.read_text())
    await kill_group(group.pid, grace=0.5)
    assert gone(group.pid, TIMEOUT) and gone(child, TIMEOUT)


async def test_a_scope_ends_its_groups_and_its_escapees_and_no_other_scopes(
    started: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    scope, neighbour = "r1:3:case-a", "r1:3:case-b"
    stage = start(started, "exec sleep 300", {SCOPE_MARK: scope})
    # left its stage's group (a session of its own), carrying the scope's mark
    escaped = start(started, "exec sleep 300", {SCOPE_MARK: scope})
    other = start(started, "exec sleep 300", {SCOPE_MARK: neighbour})
    eventually(lambda: escaped.pid in marked(SCOPE_MARK, scope), within=TIMEOUT)
    assert scope_left(scope, [stage.pid])
    await end_scope(scope, [stage.pid], grace=0.5)
    assert gone(stage.pid, TIMEOUT) and gone(escaped.pid, TIMEOUT)
    # Reaped, as the agent's stage watch does (unless end_scope did: as a
    # subreaper, which an agent in this process made it, it reaps them all).
    stage.wait(TIMEOUT)
    assert not scope_left(scope, [stage.pid])
    assert alive(other.pid) and scope_left(neighbour)


def test_the_ledger_takes_a_scopes_groups_and_kill_all_ends_even_an_earlier_agents(
    started: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    path = tmp_path / "work" / ".phalanx" / "groups"
    earlier = start(started, "exec sleep 300")  # noted by an agent killed before this one
    path.parent.mkdir(parents=True)
    path.write_text(f"{earlier.pid}\n")
    a, b = start(started, "exec sleep 300"), start(started, "exec sleep 300")
    ledger = GroupLedger(path)
    ledger.add(a.pid, "case-a")
    ledger.add(b.pid, "case-b")
    assert ledger.take("case-a") == {a.pid}
    assert ledger.take("case-a") == set()  # once
    assert read_ledger(path) == {earlier.pid, a.pid, b.pid}  # on disk: every group noted
    ledger.kill_all()
    for process in (earlier, b, a):
        assert process.wait(TIMEOUT) == -signal.SIGKILL


SUBREAPER = """
import asyncio, json, subprocess, sys
from phalanx.host.process import become_subreaper, end_processes, escapees
assert become_subreaper()
# a stage whose child outlives it: the orphan comes back to this process
out = subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
orphan = int(out.stdout)
marked = subprocess.run(
    ["sh", "-c", "PHALANX_SCOPE=x sleep 300 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True
)
found = escapees()
asyncio.run(end_processes(found, grace=0))
print(json.dumps({"orphan": orphan, "marked": int(marked.stdout), "found": found,
                  "left": escapees()}))
"""


def test_a_subreaper_finds_the_orphans_its_stages_left_and_ends_them(tmp_path: Path) -> None:
    mark = str(tmp_path)  # on everything the script starts: ended here whatever happens
    env = {**os.environ, "PHALANX_TEST_MARK": mark}
    try:
        done = subprocess.run(
            [sys.executable, "-c", SUBREAPER], env=env, capture_output=True, text=True,
            timeout=TIMEOUT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        said = json.loads(done.stdout)
        assert sorted(said["found"]) == sorted([said["orphan"], said["marked"]])
        assert said["left"] == []
        assert gone(said["orphan"], TIMEOUT) and gone(said["marked"], TIMEOUT)
    finally:
        for pid in marked("PHALANX_TEST_MARK", mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
