"""Agents of one name against a real `phalanx serve`: a second live agent is
refused with a reason, a reconnect after a dead socket takes over, and a
revoked token keeps agents out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.processes import gone
from tests.service.test_serve import make_repo, start, stop, user_token, wait_run

NAME = "r1.t.test"


def end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        if not gone(proc.pid, 10):
            proc.kill()
    proc.wait(10)


def test_one_live_agent_per_name_a_dead_socket_gives_way_and_revoked_is_refused(
    tmp_path: Path,
) -> None:
    # A 6 s heartbeat: pings every 1.5 s, so a stopped agent's connection
    # counts as dead after ~2 s, well before the heartbeat timeout drops it.
    served = start(
        tmp_path, make_repo(tmp_path / "defs"), tmp_path / "data",
        env={"PHALANX_HEARTBEAT_TIMEOUT": "6"},
    )  # fmt: skip
    agents: list[subprocess.Popen[str]] = []
    try:
        token = user_token(served, "otto", "operator")
        (tmp_path / "agent.token").write_text(served.admin("token", "create", NAME))
        ws = served.url.replace("http://", "ws://") + "/agent"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
        command = [sys.executable, "-m", "phalanx.cli", "agent", "--coordinator", ws,
                   "--name", NAME, "--workdir", str(tmp_path),
                   "--token-file", str(tmp_path / "agent.token")]  # fmt: skip

        def spawn() -> subprocess.Popen[str]:
            proc = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean
            )
            agents.append(proc)
            return proc

        with served.client(token) as client:
            first = spawn()
            run = client.post("/api/suites/far/runs").json()["id"]
            assert wait_run(client, run, ("passed", "failed", "error"))["status"] == "passed"

            # A second agent under the connected agent's name: refused, told why.
            second = subprocess.run(command, capture_output=True, text=True, timeout=60, env=clean)
            assert second.returncode != 0
            assert f"an agent named {NAME} is already connected" in second.stderr
            assert first.poll() is None

            # The first agent's socket stays open but stops answering: a new
            # agent of that name (its restart elsewhere) takes the host over.
            first.send_signal(signal.SIGSTOP)
            time.sleep(3)
            third = spawn()
            run = client.post("/api/suites/far/runs").json()["id"]
            assert wait_run(client, run, ("passed", "failed", "error"))["status"] == "passed"
            assert third.poll() is None
            agents_now = client.get("/api/agents").json()
            assert [(a["name"], a["connected"]) for a in agents_now] == [(NAME, True)]

        served.admin("token", "revoke", NAME)
        revoked = subprocess.run(command, capture_output=True, text=True, timeout=60, env=clean)
        assert revoked.returncode != 0 and "refused" in revoked.stderr
        assert "already connected" not in revoked.stderr  # the token, not the name
    finally:
        for proc in agents:
            end(proc)
        stop(served)
    log = served.log.read_text()
    assert "phx_agent_" not in log and "phx_user_" not in log
