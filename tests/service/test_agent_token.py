"""A stage cannot find its agent's token: not in the agent's command line,
not in the environment /proc shows of it, not in its own environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.service.test_serve import make_repo, start, stop, user_token, wait_run

PEEK = """\
env
p=$$
while [ "$p" -gt 1 ]; do
  if tr '\\0' ' ' < /proc/$p/cmdline | grep -q 'phalanx.* agent\\|phalanx.host'; then
    echo AGENT; tr '\\0' ' ' < /proc/$p/cmdline; echo; tr '\\0' '\\n' < /proc/$p/environ
  fi
  p=$(awk '/^PPid:/{print $2}' /proc/$p/status)
done
"""


def test_a_stage_finds_no_token_of_an_agent_given_it_in_its_environment(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "defs")
    (repo / "test-suites" / "peek" / "tc" / "a").mkdir(parents=True)
    (repo / "test-suites" / "peek" / "tc" / "a" / "run.sh").write_text(PEEK)
    (repo / "test-suites" / "peek" / "suite.yaml").write_text("cluster: remote\ntests: [a]\n")
    served = start(tmp_path, repo, tmp_path / "data")
    agent: subprocess.Popen[bytes] | None = None
    try:
        token = user_token(served, "otto", "operator")
        secret = served.admin("token", "create", "r1.t.test")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
        agent = subprocess.Popen(
            [sys.executable, "-m", "phalanx.cli", "agent",
             "--coordinator", served.url.replace("http://", "ws://") + "/agent",
             "--name", "r1.t.test", "--workdir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=clean | {"PHALANX_AGENT_TOKEN": secret}, start_new_session=True,
        )  # fmt: skip
        with served.client(token) as client:
            run = client.post("/api/suites/peek/runs").json()["id"]
            assert wait_run(client, run, ("passed", "failed", "error"))["status"] == "passed"
            output = client.get(
                f"/api/runs/{run}/output", params={"case": "a", "stage": "run", "host": "r1.t.test"}
            ).text
    finally:
        if agent is not None:
            os.killpg(agent.pid, signal.SIGTERM)
            agent.wait(30)
        stop(served)
    assert "AGENT" in output and "--coordinator" in output  # it read its agent's /proc
    assert "PHALANX_AGENT_TOKEN=phx" not in output
    assert secret not in output
