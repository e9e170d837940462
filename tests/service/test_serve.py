"""`phalanx serve` as a team runs it: a real service process on a SQLite data
folder, users' API tokens and agents' tokens made by the admin commands,
runs submitted over HTTP and with `phalanx submit`, real agent processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from tests.eventually import eventually
from tests.processes import gone
from tests.service.test_admin import PASSWORD, phalanx

ONE = "name: one\nprovider: local\nhosts:\n  - {name: h1.t.test}\n"
REMOTE = "name: remote\nhosts:\n  - {name: r1.t.test}\n"
SUITES = {
    "good": ("one", "echo hello from @slavename@\n"),
    "bad": ("one", "echo failing; exit 3\n"),
    "slow": ("one", "sleep 4\n"),
    "far": ("remote", "echo served by @slavename@\n"),
    # XrdTest scripts fetch shared files from the master
    "fetch": (
        "one",
        "curl -sf @proto@://@coordinator@:@port@/showScript/utils/helper.sh\n"
        "for p in ../clusters/one.yaml utils/escape utils/../../outside; do\n"
        "  echo \"$p $(curl -s --path-as-is -o /dev/null -w '%{http_code}' "
        '@proto@://@coordinator@:@port@/showScript/$p)"\n'
        "done\n",
    ),
}
LONG = "cluster: one\ntests: [a, b]\ntimeout: 120\n"  # case a is quick, case b is not


def make_repo(root: Path) -> Path:
    (root / "clusters").mkdir(parents=True)
    (root / "clusters" / "one.yaml").write_text(ONE)
    (root / "clusters" / "remote.yaml").write_text(REMOTE)
    for name, (cluster, script) in SUITES.items():
        folder = root / "test-suites" / name / "tc" / "a"
        folder.mkdir(parents=True)
        (folder / "run.sh").write_text(script)
        (root / "test-suites" / name / "suite.yaml").write_text(
            f"cluster: {cluster}\ntests: [a]\ntimeout: 60\n"
        )
    for name, script in (("a", "echo first\n"), ("b", "sleep 60\n")):
        (root / "test-suites" / "long" / "tc" / name).mkdir(parents=True)
        (root / "test-suites" / "long" / "tc" / name / "run.sh").write_text(script)
    (root / "test-suites" / "long" / "suite.yaml").write_text(LONG)
    (root / "utils").mkdir()
    (root / "utils" / "helper.sh").write_text("echo a shared helper\n")
    (root.parent / "outside").write_text("not the repo's\n")
    (root / "utils" / "escape").symlink_to(root.parent / "outside")
    return root


def wait_case_a(client: httpx.Client, run_id: str) -> None:
    """Until case a has ended and case b's long stage runs (a's results were
    acked, so recorded, before b began)."""

    def there() -> bool:
        cases = {c["name"]: c for c in client.get(f"/api/runs/{run_id}").json()["cases"]}
        a, b = cases.get("a"), cases.get("b")  # none while the run is queued
        return (
            a is not None
            and b is not None
            and a["status"] == "passed"
            and any(s["name"] == "run" for s in b["stages"])
        )

    eventually(there, within=60, what="case a over, case b running")


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    data: Path
    log: Path
    cwd: Path

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def admin(self, *args: str, stdin: str = "") -> str:
        done = phalanx(*args, "--data", str(self.data), cwd=self.cwd, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def start(
    tmp: Path,
    repo: Path,
    data: Path,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
) -> Served:
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [python, "-m", "phalanx.cli", "serve", "--repo", str(repo),
             "--listen", "127.0.0.1:0", "--data", str(data)],
            cwd=tmp, stdout=out, stderr=out, text=True,
            # Local agents as root, as before local_agent_user: these tests'
            # stages write into the test's own (root-only) folders.
            env=clean
            | {"PHALANX_CONNECT_TIMEOUT": "4", "PHALANX_LOCAL_AGENT_USER": ""}
            | (env or {}),
        )  # fmt: skip

    def listening() -> str | None:
        text = log.read_text()
        assert proc.poll() is None, text  # it did not stop meanwhile
        if "listening on http://" in text:
            return text.split("listening on ", 1)[1].split()[0]
        return None

    url = eventually(listening, within=60, what="phalanx serve listening")
    return Served(proc, url, data, log, tmp)


def stop(served: Served) -> None:
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGTERM)
        try:
            served.proc.wait(30)
        except subprocess.TimeoutExpired:
            served.proc.kill()
            served.proc.wait(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    service = start(tmp_path, make_repo(tmp_path / "defs"), tmp_path / "data")
    try:
        yield service
    finally:
        stop(service)
    assert "phx_user_" not in service.log.read_text()  # no secret in the log
    assert "phx_agent_" not in service.log.read_text()


def user_token(served: Served, name: str, role: str) -> str:
    served.admin("user", "add", name, "--role", role, stdin=PASSWORD + "\n")
    return served.admin("user", "token", name)


def wait_run(client: httpx.Client, run_id: str, until: tuple[str, ...], within: float = 60) -> Any:

    def ended() -> Any:
        document = client.get(f"/api/runs/{run_id}").json()
        return document if document["status"] in until else None

    return eventually(ended, within=within, what=f"run {run_id} {'/'.join(until)}")


def test_health_docs_and_who_may_do_what(served: Served) -> None:
    viewer = user_token(served, "vera", "viewer")
    operator = user_token(served, "otto", "operator")
    agent = served.admin("token", "create", "r1.t.test")
    with served.client() as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/openapi.json").status_code == 200
        refused = anonymous.get("/api/suites")
        assert refused.status_code == 401 and refused.json()["message"]
    for wrong in ("nonsense", agent, "phx_user_" + "x" * 40):
        with served.client(wrong) as client:
            answer = client.get("/api/suites")
            assert answer.status_code == 401, wrong
            assert "message" in answer.json()
    with served.client(viewer) as client:
        assert {s["name"] for s in client.get("/api/suites").json()} == {*SUITES, "long"}
        forbidden = client.post("/api/suites/good/runs")
        assert forbidden.status_code == 403 and "operator" in forbidden.json()["message"]
    with served.client(operator) as client:
        assert client.post("/api/suites/nope/runs").status_code == 404
        assert client.get("/api/runs/nope").json() == {"message": "no run 'nope'"}
        assert client.get("/api/runs", params={"limit": "x"}).status_code == 422
        assert client.get("/api/runs", params={"limit": 0}).status_code == 422
        clusters = {c["name"]: c for c in client.get("/api/clusters").json()}
        assert clusters["one"]["provider"] == "local"
        assert clusters["remote"]["provider"] == "agents"
        suite = client.get("/api/suites/good").json()
        assert suite["cluster"] == "one" and suite["cases"] == ["a"] and suite["ok"]


def test_submit_wait_exits_with_the_runs_code_and_the_store_has_the_run(served: Served) -> None:
    token = user_token(served, "otto", "operator")
    (served.cwd / "token").write_text(token + "\n")
    submit = ("submit", "--coordinator", served.url, "--token-file", "token", "--wait")
    good = phalanx(*submit[:1], "good", *submit[1:], cwd=served.cwd)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "a: passed" in good.stdout and good.stdout.rstrip().endswith("passed")
    bad = phalanx(*submit[:1], "bad", *submit[1:], cwd=served.cwd)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "a: failed" in bad.stdout

    with served.client(token) as client:
        runs = client.get("/api/runs", params={"suite": "good"}).json()
        assert [r["status"] for r in runs] == ["passed"]
        document = client.get(f"/api/runs/{runs[0]['id']}").json()
        assert document["suite"] == "good" and document["status"] == "passed"
        assert document["queued_at"] and document["trigger"] == "api:otto"
        ((case),) = document["cases"]
        assert case["name"] == "a" and case["status"] == "passed"
        output = client.get(
            f"/api/runs/{runs[0]['id']}/output",
            params={"case": "a", "stage": "run", "host": "h1.t.test", "offset": 6, "length": 4},
        )
        assert output.status_code == 200 and output.content == b"from"
        assert output.headers["x-phalanx-size"] == str(len(b"hello from h1.t.test\n"))
        outside = client.get(
            f"/api/runs/{runs[0]['id']}/output",
            params={"case": "../../..", "stage": "..", "host": "etc"},
        )
        assert outside.status_code == 404 and "message" in outside.json()
        too_long = client.get(
            f"/api/runs/{runs[0]['id']}/output", params={"stage": "run", "host": "h" * 253}
        )
        assert too_long.status_code == 404 and "message" in too_long.json()
        failed = client.get("/api/runs", params={"status": "failed"}).json()
        assert [r["suite"] for r in failed] == ["bad"]
        nothing_failed = client.post(f"/api/runs/{runs[0]['id']}/rerun", json={"failed_only": True})
        assert (
            nothing_failed.status_code == 409
            and "no failed case" in nothing_failed.json()["message"]
        )
        assert client.post("/api/runs/nope/rerun").status_code == 404
        assert client.post(f"/api/runs/{runs[0]['id']}/rerun", json={"x": 1}).status_code == 422

    again = phalanx(
        "submit", "--rerun", failed[0]["id"], "--failed-only", *submit[1:], cwd=served.cwd
    )
    assert again.returncode == 1, again.stdout + again.stderr
    with served.client(token) as client:
        (rerun,) = client.get("/api/runs", params={"suite": "bad", "limit": 1}).json()
        assert rerun["trigger"] == f"rerun:{failed[0]['id']}" and rerun["status"] == "failed"

    no_token = phalanx("submit", "good", "--coordinator", served.url, cwd=served.cwd)
    assert no_token.returncode == 2 and "no token" in no_token.stderr


def test_the_hosts_of_a_running_run_read_suite_files_and_nothing_outside(
    served: Served,
) -> None:
    token = user_token(served, "otto", "operator")
    with served.client(token) as client:
        outsider = client.get("/showScript/utils/helper.sh")  # no run holds a host here
        assert outsider.status_code == 403
        assert outsider.text == "phalanx: suite files are for the hosts of a running run\n"
        run = client.post("/api/suites/fetch/runs").json()["id"]
        document = wait_run(client, run, ("passed", "failed", "error"))
        assert document["status"] == "passed", document
        output = client.get(
            f"/api/runs/{run}/output", params={"case": "a", "stage": "run", "host": "h1.t.test"}
        ).text
        assert output.splitlines() == [
            "echo a shared helper",
            "../clusters/one.yaml 404",
            "utils/escape 404",
            "utils/../../outside 404",
        ]


def test_runs_on_one_cluster_queue_in_order_and_a_queued_run_cancels(served: Served) -> None:
    token = user_token(served, "otto", "operator")
    with served.client(token) as client:
        first = client.post("/api/suites/slow/runs").json()["id"]
        second = client.post("/api/suites/good/runs").json()["id"]
        third = client.post("/api/suites/good/runs").json()["id"]
        wait_run(client, first, ("running",))
        assert client.get(f"/api/runs/{second}").json()["status"] == "queued"
        cancelled = client.post(f"/api/runs/{third}/cancel")
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
        assert client.post(f"/api/runs/{third}/cancel").status_code == 409
        with client.stream("GET", f"/api/runs/{second}/events") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            seen = [
                json.loads(line.removeprefix("data: "))["status"]
                for line in events.iter_lines()
                if line.startswith("data: ")
            ]
        # the stream follows the run from the queue to its end, then closes
        assert seen[0] == "queued" and "running" in seen and seen[-1] == "passed"
        one = wait_run(client, first, ("passed", "failed", "error"))
        two = wait_run(client, second, ("passed", "failed", "error"))
        assert one["status"] == two["status"] == "passed"
        assert two["started_at"] >= one["ended_at"]
        three = client.get(f"/api/runs/{third}").json()
        assert three["status"] == "cancelled" and "otto" in three["reason"]


def test_a_running_run_cancels(served: Served) -> None:
    token = user_token(served, "otto", "operator")
    with served.client(token) as client:
        run = client.post("/api/suites/long/runs").json()["id"]
        wait_case_a(client, run)
        assert client.post(f"/api/runs/{run}/cancel").json()["status"] == "running"
        document = wait_run(client, run, ("cancelled",), within=30)
        (case_b,) = [c for c in document["cases"] if c["name"] == "b"]
        assert case_b["status"] == "cancelled"


def test_remote_agents_serve_their_hosts_with_store_tokens(served: Served, tmp_path: Path) -> None:
    token = user_token(served, "otto", "operator")
    ws = served.url.replace("http://", "ws://") + "/agent"
    (tmp_path / "agent.token").write_text(served.admin("token", "create", "r1.t.test"))
    (tmp_path / "bad.token").write_text("phx_agent_" + "x" * 43)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    agent_cmd = [sys.executable, "-m", "phalanx.cli", "agent", "--coordinator", ws,
                 "--name", "r1.t.test", "--workdir", str(tmp_path)]  # fmt: skip

    bad = subprocess.run(
        [*agent_cmd, "--token-file", str(tmp_path / "bad.token")],
        capture_output=True, text=True, timeout=60, env=clean,
    )  # fmt: skip
    assert bad.returncode != 0 and "refused" in bad.stderr

    with served.client(token) as client:
        # No agent: the run waits for it, visibly, then ends in error.
        lonely = client.post("/api/suites/far/runs").json()["id"]
        waiting = eventually(
            lambda: client.get(f"/api/runs/{lonely}").json()["waiting"],
            within=30,
            what="the run waits for its agent",
        )
        assert waiting == "waiting for agents: r1.t.test"
        ended = wait_run(client, lonely, ("error",), within=30)
        assert "did not connect" in ended["reason"]

        agent = subprocess.Popen(
            [*agent_cmd, "--token-file", str(tmp_path / "agent.token")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean,
        )  # fmt: skip
        try:
            run = client.post("/api/suites/far/runs").json()["id"]
            document = wait_run(client, run, ("passed", "failed", "error"))
            assert document["status"] == "passed", document
            agents = client.get("/api/agents").json()
            assert [(a["name"], a["connected"]) for a in agents] == [("r1.t.test", True)]
        finally:
            agent.send_signal(signal.SIGTERM)
            if not gone(agent.pid, 10):
                agent.kill()
            agent.wait(10)


def test_a_killed_service_leaves_its_run_interrupted_with_the_results_it_acked(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "defs")
    data = tmp_path / "data"
    service = start(tmp_path, repo, data)
    try:
        token = user_token(service, "otto", "operator")
        with service.client(token) as client:
            run = client.post("/api/suites/long/runs").json()["id"]
            wait_case_a(client, run)
        # What the agent was acked is in the database (the live page may show
        # a result a moment before its row is committed).
        eventually(
            lambda: _recorded(data / "phalanx.db", run, "a", "run"),
            within=30,
            what="case a's run stage recorded",
        )
        service.proc.kill()
        service.proc.wait(10)
    finally:
        stop(service)
    again = start(tmp_path, repo, data)
    try:
        with again.client(token) as client:
            document = client.get(f"/api/runs/{run}").json()
            assert document["status"] == "interrupted"
            (case_a,) = [c for c in document["cases"] if c["name"] == "a"]
            run_stage = [s for s in case_a["stages"] if s["name"] == "run"]
            assert run_stage and run_stage[0]["hosts"][0]["exit_code"] == 0
    finally:
        stop(again)


def _recorded(database: Path, run_id: str, case: str, stage: str) -> bool:
    """Whether a host's result of that stage has its row (read as another
    process would, without the service)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        (count,) = db.execute(
            "select count(*) from stage_results where run_id = ? and case_name = ? and stage = ?",
            (run_id, case, stage),
        ).fetchone()
    return bool(count)


def test_a_schedule_fires_runs_and_the_next_time_is_shown(tmp_path: Path) -> None:
    repo = tmp_path / "defs"
    (repo / "clusters").mkdir(parents=True)
    (repo / "clusters" / "one.yaml").write_text(ONE)
    (repo / "test-suites" / "tick" / "tc" / "a").mkdir(parents=True)
    (repo / "test-suites" / "tick" / "tc" / "a" / "run.sh").write_text("true\n")
    (repo / "test-suites" / "tick" / "suite.yaml").write_text(
        "cluster: one\ntests: [a]\nschedule: {second: '*'}\n"
    )
    service = start(tmp_path, repo, tmp_path / "data")
    try:
        token = user_token(service, "vera", "viewer")
        with service.client(token) as client:
            (suite,) = client.get("/api/suites").json()
            assert suite["schedule"] == {"second": "*"} and suite["next_run"]
            runs = eventually(
                lambda: client.get("/api/runs", params={"suite": "tick"}).json(),
                within=30,
                what="a scheduled run",
            )
            assert runs[0]["trigger"] == "schedule"
    finally:
        stop(service)


class _Hooks(BaseHTTPRequestHandler):
    got: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_alerts_are_sent_and_kept_with_the_run_and_retention_prunes(tmp_path: Path) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    nobody = f"http://127.0.0.1:{dead.getsockname()[1]}/hook"
    repo = make_repo(tmp_path / "defs")
    (repo / "test-suites" / "good" / "suite.yaml").write_text(
        f"cluster: one\ntests: [a]\nwebhooks: ['{hook}', '{nobody}']\n"
    )
    service = start(tmp_path, repo, tmp_path / "data", env={"PHALANX_KEEP_RUNS": "1"})
    try:
        token = user_token(service, "otto", "operator")
        with service.client(token) as client:
            first = client.post("/api/suites/good/runs").json()["id"]
            document = wait_run(client, first, ("passed", "failed", "error"))
            assert document["status"] == "passed"  # a dead receiver fails no run
            alerts = eventually(
                lambda: client.get(f"/api/runs/{first}").json()["alerts"],
                within=30,
                what="the run's alerts recorded",
            )
            assert [(a["channel"], a["ok"]) for a in alerts] == [
                ("webhook", True),
                ("webhook", False),
            ]
            assert [(g["run_id"], g["status"]) for g in _Hooks.got] == [(first, "passed")]
            folder = tmp_path / "data" / "runs" / first
            assert folder.is_dir()
            # An ended run's page, rendered once and then kept for its readers
            for _ in range(2):
                page = client.get(f"/runs/{first}")
                assert page.status_code == 200 and first in page.text

            second = client.post("/api/suites/good/runs").json()["id"]
            wait_run(client, second, ("passed", "failed", "error"))
            # keep_runs = 1: the older run goes, its row and then its folder
            eventually(
                lambda: client.get(f"/api/runs/{first}").status_code == 404 and not folder.exists(),
                within=30,
                what="the older run pruned",
            )
            assert client.get(f"/runs/{first}").status_code == 404  # its kept page went with it
    finally:
        stop(service)
        receiver.shutdown()
        dead.close()


def test_a_person_signs_in_with_a_password_and_out_again(served: Served) -> None:
    served.admin("user", "add", "lena", "--role", "operator", stdin=PASSWORD + "\n")
    with served.client() as browser:
        wrong = browser.post("/api/login", json={"name": "lena", "password": "not it"})
        assert wrong.status_code == 401
        assert wrong.json() == {"message": "wrong name or password"}
        assert browser.get("/api/suites").status_code == 401
        signed = browser.post("/api/login", json={"name": "lena", "password": PASSWORD})
        assert signed.status_code == 200 and signed.json() == {"name": "lena", "role": "operator"}
        cookie = signed.headers["set-cookie"].lower()
        assert "phalanx_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert PASSWORD not in served.log.read_text()
        # The session cookie reads and writes as the user's role allows.
        assert browser.get("/api/suites").status_code == 200
        # a browser's page says where its writes come from (service/origin.py)
        ours = {"Origin": served.url}
        assert browser.post("/api/suites/good/runs", headers=ours).status_code == 201
        assert browser.post("/api/logout", headers=ours).status_code == 200
        assert browser.get("/api/suites").status_code == 401
