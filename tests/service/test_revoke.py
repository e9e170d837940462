"""Taking access away takes effect at once: revoking an agent's token closes
its live connection (its stage ends in error, no next stage starts on it),
and removing a user ends the event streams that user has open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.eventually import eventually, never
from tests.processes import gone
from tests.service.test_admin import PASSWORD
from tests.service.test_serve import make_repo, start, stop, user_token, wait_run

WITHIN = 1.0  # seconds: what the service promises
SLACK = 1.5  # what a loaded test machine adds to reading and reporting it


def _repo(root: Path) -> Path:
    repo = make_repo(root)
    for case, script in (("a", "echo started\nsleep 30\n"), ("b", "echo the next stage\n")):
        (repo / "test-suites" / "farslow" / "tc" / case).mkdir(parents=True)
        (repo / "test-suites" / "farslow" / "tc" / case / "run.sh").write_text(script)
    (repo / "test-suites" / "farslow" / "suite.yaml").write_text(
        "cluster: remote\ntests: [a, b]\ntimeout: 120\n"
    )
    return repo


def test_revoking_an_agents_token_closes_its_connection_within_a_second(tmp_path: Path) -> None:
    served = start(tmp_path, _repo(tmp_path / "defs"), tmp_path / "data")
    agent: subprocess.Popen[bytes] | None = None
    try:
        token = user_token(served, "otto", "operator")
        (tmp_path / "agent.token").write_text(served.admin("token", "create", "r1.t.test"))
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
        agent = subprocess.Popen(
            [sys.executable, "-m", "phalanx.cli", "agent",
             "--coordinator", served.url.replace("http://", "ws://") + "/agent",
             "--name", "r1.t.test", "--workdir", str(tmp_path),
             "--token-file", str(tmp_path / "agent.token")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean,
            start_new_session=True,
        )  # fmt: skip
        with served.client(token) as client:
            run = client.post("/api/suites/farslow/runs").json()["id"]
            where = {"case": "a", "stage": "run", "host": "r1.t.test"}
            eventually(
                lambda: "started" in client.get(f"/api/runs/{run}/output", params=where).text,
                within=60,
                what="case a's stage running on the agent",
            )
            served.admin("token", "revoke", "r1.t.test")

            def disconnected() -> bool:
                (row,) = client.get("/api/agents").json()
                return not row["connected"]

            eventually(disconnected, within=WITHIN + SLACK, what="the revoked agent disconnected")
            assert gone(agent.pid, 5), "a refused agent exits instead of reconnecting"
            document = wait_run(client, run, ("passed", "failed", "error"), within=30)
            assert document["status"] == "error", document
            stages = {(c["name"], s["name"]) for c in document["cases"] for s in c["stages"]}
            assert ("b", "run") not in stages or all(
                s["status"] != "passed" for c in document["cases"] for s in c["stages"]
            ), document
    finally:
        if agent is not None and agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(10)
        stop(served)


def _follow(
    client: httpx.Client, path: str, ended: threading.Event, opened: threading.Event
) -> None:
    with client.stream("GET", path, timeout=60) as answer:
        assert answer.status_code == 200
        opened.set()
        for _ in answer.iter_bytes():
            pass
    ended.set()


def test_removing_a_user_ends_their_event_streams_within_a_second(tmp_path: Path) -> None:
    served = start(tmp_path, _repo(tmp_path / "defs"), tmp_path / "data")
    try:
        operator = user_token(served, "otto", "operator")
        served.admin("user", "add", "vera", "--role", "viewer", stdin=PASSWORD + "\n")
        viewer_token = served.admin("user", "token", "vera")
        with served.client(operator) as client:
            run = client.post("/api/suites/long/runs").json()["id"]  # case b sleeps 60 s
        browser = httpx.Client(base_url=served.url, timeout=30)
        assert (
            browser.post("/login", data={"name": "vera", "password": PASSWORD}).status_code == 303
        )
        api = served.client(viewer_token)
        streams = [
            (api, f"/api/runs/{run}/events"),
            (browser, f"/runs/{run}/live"),
            (browser, "/live/dashboard"),
        ]
        ends = []
        for client, path in streams:
            ended, opened = threading.Event(), threading.Event()
            threading.Thread(
                target=_follow, args=(client, path, ended, opened), daemon=True
            ).start()
            assert opened.wait(30), path
            ends.append((path, ended))
        never(
            lambda: [path for path, ended in ends if ended.is_set()],
            window=1.0,
            what="a stream ended while vera may read",
        )
        served.admin("user", "remove", "vera")
        removed = time.monotonic()
        for path, ended in ends:
            assert ended.wait(max(0.0, WITHIN + SLACK - (time.monotonic() - removed))), path
        with served.client(operator) as client:
            client.post(f"/api/runs/{run}/cancel")
        api.close()
        browser.close()
    finally:
        stop(served)


def test_revoking_a_hypervisors_token_closes_its_connection(tmp_path: Path) -> None:
    from tests.hypervisor.test_daemon import start_hypervisor

    served = start(tmp_path, make_repo(tmp_path / "defs"), tmp_path / "data")
    daemon: subprocess.Popen[str] | None = None
    try:
        daemon = start_hypervisor(served, tmp_path, "hv1")
        token = user_token(served, "vera", "viewer")
        with served.client(token) as client:
            (row,) = client.get("/api/hypervisors").json()
            assert row["connected"] and row["lost"] is None, row
            served.admin("token", "revoke", "hv1", "--hypervisor")
            eventually(
                lambda: not client.get("/api/hypervisors").json()[0]["connected"],
                within=WITHIN + SLACK,
                what="the revoked hypervisor disconnected",
            )
        assert "hypervisor hv1 lost: its token was revoked" in served.log.read_text()
    finally:
        if daemon is not None:
            daemon.kill()
            daemon.wait(30)
        stop(served)
