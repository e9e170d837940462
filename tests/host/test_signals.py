"""Which processes a nemesis's `pause NAME` / `kill NAME` reaches: those
called NAME (by command name, cut by the kernel at 15 characters, or by
program file name), and only the case's processes of this agent."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.host.process import SCOPE_MARK
from phalanx.host.signals import called, named
from tests.eventually import eventually

LONG = "a-server-with-a-long-name"


@pytest.fixture
def scripts(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    started: dict[str, subprocess.Popen[bytes]] = {}
    for name, scope, workdir in (
        ("ticker", "run:1:case", "/w/mine"),
        (LONG, "run:1:case", "/w/mine"),
        ("other", "run:1:case", "/w/mine"),
        ("ticker", "run:1:case", "/w/another-agent"),
        ("ticker", "run:2:case", "/w/mine"),
    ):
        folder = tmp_path / f"{len(started)}"
        folder.mkdir()
        script = folder / name
        script.write_text("#!/bin/sh\nwhile :; do sleep 1; done\n")
        script.chmod(0o755)
        env = {**os.environ, SCOPE_MARK: scope, "PHALANX_WORKDIR": workdir}
        started[f"{name}@{scope}@{workdir}"] = subprocess.Popen(
            [str(script)], env=env, start_new_session=True
        )
    # Each has exec'd its script (before that it is a copy of this process).
    eventually(
        lambda: all(called(c.pid, key.split("@")[0]) for key, c in started.items()) or None,
        what="the scripts started",
    )
    yield started
    for child in started.values():
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)


def test_only_the_case_processes_of_this_agent_so_named(
    scripts: dict[str, subprocess.Popen[bytes]],
) -> None:
    mine = "PHALANX_WORKDIR=/w/mine"
    ticker = scripts["ticker@run:1:case@/w/mine"].pid
    assert called(ticker, "ticker")
    assert not called(ticker, "tick")
    assert named("run:1:case", mine, "ticker") == [ticker]
    # A name longer than the kernel keeps of a command name still matches.
    assert named("run:1:case", mine, LONG) == [scripts[f"{LONG}@run:1:case@/w/mine"].pid]
    assert named("run:1:case", mine, "nothing-so-named") == []
