"""Agents of one name against a real `phalanx serve`: a second live agent is
refused with a reason, a reconnect after a dead socket takes over, and a
revoked token keeps agents out; an agent's labels, version, stage and
host, and its last-seen time once it has gone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from phalanx import __version__
from tests.eventually import eventually
from tests.processes import gone
from tests.service.test_serve import make_repo, start, stop, user_token, wait_run
from tests.service.web.helpers import add_users, signed_in

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


def badge(row: str) -> str:
    found = re.search(r'<span class="badge [^"]*">([^<]+)<', row)
    assert found, row
    return found.group(1)


def agent_row(client: httpx.Client, name: str) -> str:
    page = client.get("/agents")
    assert page.status_code == 200
    return page.text.split(f'id="agent-{name}"', 1)[1].split("</tr>", 1)[0]


def test_an_agent_shows_its_labels_version_stage_and_host_and_stays_listed_when_gone(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "defs")
    # a run on the agent that lasts until the test lets it end
    started, release = tmp_path / "started", tmp_path / "release"
    held = repo / "test-suites" / "held"
    (held / "tc" / "a").mkdir(parents=True)
    (held / "tc" / "a" / "run.sh").write_text(
        f"touch {started}\nfor i in $(seq 600); do [ -e {release} ] && exit 0; sleep 0.1; done\n"
        "exit 1\n"
    )
    (held / "suite.yaml").write_text("cluster: remote\ntests: [a]\ntimeout: 90\n")
    data = tmp_path / "data"
    served = start(tmp_path, repo, data)
    agent: subprocess.Popen[str] | None = None
    try:
        add_users(served)  # vera the viewer, otto the operator
        token = served.admin("user", "token", "otto")
        (tmp_path / "agent.token").write_text(served.admin("token", "create", NAME))
        ws = served.url.replace("http://", "ws://") + "/agent"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
        agent = subprocess.Popen(
            [sys.executable, "-m", "phalanx.cli", "agent", "--coordinator", ws,
             "--name", NAME, "--workdir", str(tmp_path / "work"),
             "--token-file", str(tmp_path / "agent.token"),
             "--label", "rack=r1", "--label", "os=debian"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean,
        )  # fmt: skip
        with served.client(token) as client, signed_in(served, "vera") as viewer:
            run = client.post("/api/suites/held/runs").json()["id"]

            def run_started() -> bool:
                if agent.poll() is not None:
                    raise RuntimeError(agent.stderr.read() if agent.stderr else "the agent ended")
                return started.exists()

            eventually(run_started, within=60, what="the held run started")

            row = agent_row(viewer, NAME)
            assert badge(row) == "connected"
            assert "rack=r1, os=debian" in row and f"<td>{__version__}</td>" in row
            assert f'href="/runs/{run}">a/run<' in row
            assert "<td>remote</td>" in row  # the cluster whose host it is
            assert re.search(r'class="last-seen">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', row)

            (listed,) = [a for a in viewer.get("/api/agents").json() if a["name"] == NAME]
            assert listed["connected"] is True
            assert listed["labels"] == {"rack": "r1", "os": "debian"}
            assert listed["version"] == __version__
            assert (listed["run"], listed["case"], listed["stage"]) == (run, "a", "run")
            assert listed["clusters"] == ["remote"]
            assert listed["address"] == "127.0.0.1"
            assert datetime.fromisoformat(listed["last_seen"]).tzinfo is not None

            release.touch()
            assert wait_run(client, run, ("passed", "failed", "error"))["status"] == "passed"
            end(agent)

            def not_connected() -> str | None:
                row = agent_row(viewer, NAME)
                return row if row and badge(row) != "connected" else None

            row = eventually(not_connected, within=30, what=f"{NAME} no longer connected")
            assert badge(row) in ("disconnected", "lost")
            assert "rack=r1, os=debian" in row and ">idle<" in row
            assert re.search(r'class="last-seen">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', row)
            (gone_agent,) = [a for a in viewer.get("/api/agents").json() if a["name"] == NAME]
            assert gone_agent["connected"] is False and gone_agent["run"] is None
            assert gone_agent["labels"] == {"rack": "r1", "os": "debian"}
            assert gone_agent["version"] == __version__
            last_seen = datetime.fromisoformat(gone_agent["last_seen"])
    finally:
        if agent is not None:
            end(agent)
        stop(served)

    # The record outlives the service: a restarted one lists the agent as it was last seen.
    served = start(tmp_path, repo, data)
    try:
        with signed_in(served, "vera") as viewer:
            (kept,) = [a for a in viewer.get("/api/agents").json() if a["name"] == NAME]
            assert kept["connected"] is False
            assert kept["labels"] == {"rack": "r1", "os": "debian"}
            assert kept["version"] == __version__
            assert datetime.fromisoformat(kept["last_seen"]) >= last_seen - timedelta(seconds=1)
            row = agent_row(viewer, NAME)
            assert badge(row) == "disconnected" and "rack=r1, os=debian" in row
            assert last_seen.strftime("%Y-%m-%d") in row
    finally:
        stop(served)
