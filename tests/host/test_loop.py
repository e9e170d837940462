"""Which event loop an agent runs (phalanx/loops.py): asyncio's own, and
uvloop when PHALANX_LOOP=uvloop asks for it. Seen from
outside, as a person would check: the libraries the agent process has
mapped, once its loop serves its local socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phalanx.host.workdir import socket_dir
from phalanx.loops import LOOP_ENV
from tests.processes import wait_for

pytest.importorskip("uvloop")


def uvloop_mapped(pid: int) -> bool:
    return "/uvloop/" in Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Callable[[str | None], int]]:
    started: list[subprocess.Popen[str]] = []

    def start(loop: str | None) -> int:
        env = {**os.environ, "PHALANX_AGENT_TOKEN": "t" * 32}
        env.pop(LOOP_ENV, None)
        if loop is not None:
            env[LOOP_ENV] = loop
        workdir = tmp_path / f"agent-{len(started)}"
        # No coordinator listens on port 9: the agent retries while it serves
        # its local socket, which it opens once its loop runs.
        proc = subprocess.Popen(
            [sys.executable, "-m", "phalanx.host", "--coordinator", "ws://127.0.0.1:9/agent",
             "--name", "h1", "--workdir", str(workdir), "--give-up", "60"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        started.append(proc)
        wait_for(socket_dir(workdir) / "agent.sock", proc)
        return proc.pid

    yield start
    for proc in started:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()


def test_an_agent_runs_on_uvloop_when_asked_to(agent: Callable[[str | None], int]) -> None:
    assert uvloop_mapped(agent("uvloop"))


def test_an_agent_runs_on_asyncios_own_loop_by_default(
    agent: Callable[[str | None], int],
) -> None:
    assert not uvloop_mapped(agent(None))
