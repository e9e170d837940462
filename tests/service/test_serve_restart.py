"""`phalanx serve` killed with -9 mid-run and started again on the same data
and port: the agent that was running the old run's stage reconnects, and the
new coordinator has it end that stage (its run is over), so nothing of the
old run goes on beside the next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.eventually import eventually
from tests.processes import alive, gone
from tests.service.test_serve import Served, make_repo, start, stop, user_token
from tests.service.test_serve_agents import end

NAME = "r1.t.test"


def restart(served: Served, repo: Path) -> Served:
    """The same service again, on its port (the agents know only that URL)."""
    port = served.url.rsplit(":", 1)[1]
    log = served.cwd / f"serve-again-{time.monotonic_ns()}.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "phalanx.cli", "serve", "--repo", str(repo),
             "--listen", f"127.0.0.1:{port}", "--data", str(served.data)],
            cwd=served.cwd, stdout=out, stderr=out, text=True, env=clean,
        )  # fmt: skip

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        return "listening on http://" in log.read_text()

    eventually(listening, within=60, what="serve listening")
    return Served(proc, served.url, served.data, log, served.cwd)


def test_after_kill_9_and_a_restart_the_old_runs_stage_is_ended(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "defs")
    pidfile = tmp_path / "stage.pid"
    held = repo / "test-suites" / "held"
    (held / "tc" / "a").mkdir(parents=True)
    (held / "tc" / "a" / "run.sh").write_text(f"echo $$ > {pidfile}\nexec sleep 300\n")
    (held / "suite.yaml").write_text("cluster: remote\ntests: [a]\ntimeout: 600\n")
    served = start(tmp_path, repo, tmp_path / "data")
    again: Served | None = None
    agent: subprocess.Popen[str] | None = None
    stage_pid: int | None = None
    try:
        token = user_token(served, "otto", "operator")
        (tmp_path / "agent.token").write_text(served.admin("token", "create", NAME))
        ws = served.url.replace("http://", "ws://") + "/agent"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
        agent = subprocess.Popen(
            [sys.executable, "-m", "phalanx.cli", "agent", "--coordinator", ws,
             "--name", NAME, "--workdir", str(tmp_path / "agent"),
             "--token-file", str(tmp_path / "agent.token")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=clean,
        )  # fmt: skip
        with served.client(token) as client:
            answer = client.post("/api/suites/held/runs")
            assert answer.status_code in (200, 201, 202), answer.text
        eventually(
            lambda: pidfile.exists() and pidfile.read_text().strip(),
            within=60,
            what="the stage started",
        )
        stage_pid = int(pidfile.read_text())

        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(30)
        assert alive(stage_pid), "the agent keeps its stage while the coordinator is away"

        again = restart(served, repo)
        # The agent reconnects (backoff at most 5 s) and is told to end it.
        assert gone(stage_pid, 40), "the old run's stage still runs after the restart"
        assert agent.poll() is None, "the agent itself stays, for the next runs"
        assert "still ran 1 stage(s) of runs that are over" in again.log.read_text()
    finally:
        if agent is not None:
            end(agent)
        if stage_pid is not None and alive(stage_pid):
            os.kill(stage_pid, signal.SIGKILL)
        if again is not None:
            stop(again)
        stop(served)
