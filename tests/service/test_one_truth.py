"""One run, one truth: the same suite through `phalanx run` and through
`phalanx serve` (remote agents, and agents the service starts itself) gives
the same record, field by field: statuses, reasons, exit codes, signals,
output tails, logs, VMs. And a host lost under serve releases its peers'
barrier within the heartbeat timeout, whether they reached it before the
loss or after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.eventually import eventually
from tests.processes import gone
from tests.service.test_serve import Served, start, stop, user_token, wait_run

HOSTS = ("r1.t.test", "r2.t.test", "r3.t.test")
ENDED = ("passed", "failed", "error", "timeout", "cancelled")
CASES = {
    "greet": "echo hello from @slavename@\n",
    "fail_one": "case @slavename@ in r2*) echo no; exit 1;; esac\necho yes\n",
    "killed": "case @slavename@ in r3*) echo dying; kill -9 $$;; esac\necho alive\n",
    # r1 ignores SIGTERM: the timeout's SIGKILL ends it; the others end at SIGTERM
    "slow": "case @slavename@ in r1*) trap '' TERM;; esac\necho waiting\nsleep 30\n",
    "talk": (
        "case @slavename@ in r1*) phalanx-send port 4242;; esac\n"
        "echo port $(phalanx-wait port)\nphalanx-sync done\necho synced\n"
    ),
    # a case named as the suite's own stages are kept (suite/...)
    "suite": "echo a case called suite\n",
}
SUITE_INIT = "echo init on @slavename@\necho line one > app.log\n"


def make_repo(root: Path) -> Path:
    (root / "clusters").mkdir(parents=True)
    listed = "".join(f"  - {{name: {h}}}\n" for h in HOSTS)
    (root / "clusters" / "local.yaml").write_text(f"name: local\nprovider: local\nhosts:\n{listed}")
    (root / "clusters" / "remote.yaml").write_text(f"name: remote\nhosts:\n{listed}")
    for cluster in ("local", "remote"):
        suite = root / "test-suites" / f"truth-{cluster}"
        for name, script in CASES.items():
            (suite / "tc" / name).mkdir(parents=True)
            (suite / "tc" / name / "run.sh").write_text(script)
        (suite / "suite_init.sh").write_text(SUITE_INIT)
        (suite / "suite.yaml").write_text(
            f"cluster: {cluster}\ntimeout: 60\nlogs: [app.log]\n"
            "initialize: file://suite_init.sh\n"
            "tests: [greet, fail_one, killed, {name: slow, timeout: 2}, talk, suite]\n"
        )
    return root


# What differs between two runs of one suite by nature: ids, times, names of
# the suite and cluster (one per way of running), and what the service adds.
VARYING = {"run_id", "suite", "cluster", "started_at", "ended_at", "duration", "queued_at",
           "trigger", "waiting", "alerts"}  # fmt: skip


def comparable(document: Any) -> Any:
    if isinstance(document, dict):
        return {k: comparable(v) for k, v in document.items() if k not in VARYING}
    if isinstance(document, list):
        return [comparable(v) for v in document]
    return document


def differences(got: Any, want: Any, where: str = "") -> list[str]:
    """Where two documents differ, by path: a failure says what, not that."""
    if isinstance(got, dict) and isinstance(want, dict):
        return [d for k in sorted(set(got) | set(want), key=str)
                for d in differences(got.get(k), want.get(k), f"{where}.{k}")]  # fmt: skip
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True))
                for d in differences(g, w, f"{where}[{i}]")]  # fmt: skip
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


def phalanx_run(repo: Path, suite: str, out: Path) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "run", str(repo), "-s", suite, "--plain",
         "--results", str(out / "results"), "--json", str(out / "results.json")],
        capture_output=True, text=True, timeout=180, env=clean, cwd=out,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # fail_one, killed and slow fail
    document: dict[str, Any] = json.loads((out / "results.json").read_text())
    return document


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    service = start(tmp_path, make_repo(tmp_path / "defs"), tmp_path / "data",
                    env={"PHALANX_HEARTBEAT_TIMEOUT": "3"})  # fmt: skip
    try:
        yield service
    finally:
        stop(service)


def remote_agents(served: Served, tmp_path: Path) -> list[subprocess.Popen[str]]:
    ws = served.url.replace("http://", "ws://") + "/agent"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    agents = []
    for host in HOSTS:
        token = tmp_path / f"{host}.token"
        token.write_text(served.admin("token", "create", host))
        command = [sys.executable, "-m", "phalanx.cli", "agent", "--coordinator", ws,
                   "--name", host, "--workdir", str(tmp_path / "agents" / host),
                   "--token-file", str(token)]  # fmt: skip
        agent = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            env=clean, start_new_session=True,
        )  # fmt: skip
        agents.append(agent)
    return agents


def end_agents(agents: list[subprocess.Popen[str]]) -> None:
    for agent in agents:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGTERM)
            if not gone(agent.pid, 10):
                os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(10)


def hosts_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    stages = [*document["stages"], *(s for c in document["cases"] for s in c["stages"])]
    return [h for s in stages for h in s["hosts"]]


def test_the_same_suite_reads_the_same_through_run_and_serve(
    served: Served, tmp_path: Path
) -> None:
    repo = tmp_path / "defs"
    alone = tmp_path / "alone"
    alone.mkdir()
    expected = phalanx_run(repo, "truth-local", alone)
    # What the comparison is worth: every field it compares is there.
    hosts = hosts_of(expected)
    assert any(h["signal"] == 9 for h in hosts) and any(h["signal"] == 15 for h in hosts)
    assert all(h["output_tail"] for h in hosts if h["output"])
    assert [h["logs"] for h in expected["stages"][0]["hosts"]] == [
        [f"suite/initialize/logs/{h}/app.log"] for h in HOSTS
    ]
    assert [c["name"] for c in expected["cases"]][-1] == "suite"

    token = user_token(served, "otto", "operator")
    with served.client(token) as client:
        # Remote agents first; then agents the service starts itself (under
        # the same names: the remote ones are gone by then).
        for suite in ("truth-remote", "truth-local"):
            agents = remote_agents(served, tmp_path) if suite == "truth-remote" else []
            try:
                run = client.post(f"/api/suites/{suite}/runs").json()["id"]
                document = wait_run(client, run, ENDED, within=120)
            finally:
                end_agents(agents)
            assert differences(comparable(document), comparable(expected)) == [], suite
            # The run folder's results.json is the same document.
            on_disk = json.loads((served.data / "runs" / run / "results.json").read_text())
            assert differences(comparable(on_disk), comparable(expected)) == [], suite


def test_the_live_document_grows_as_stages_run(served: Served, tmp_path: Path) -> None:
    token = user_token(served, "otto", "operator")
    agents = remote_agents(served, tmp_path)
    try:
        with served.client(token) as client:
            run = client.post("/api/suites/truth-remote/runs").json()["id"]
            seen: list[tuple[str, ...]] = []

            def ended() -> bool:
                """Whether the run has ended; each document on the way noted."""
                document = client.get(f"/api/runs/{run}").json()
                if document["status"] not in ("queued", "running"):
                    return True
                cases = tuple(f"{c['name']}:{c['status']}" for c in document["cases"])
                if not seen or seen[-1] != cases:
                    seen.append(cases)
                slow = next(c for c in document["cases"] if c["name"] == "slow")
                if slow["status"] == "running":
                    (stage,) = [s for s in slow["stages"] if s["name"] == "run"]
                    running = [h for h in stage["hosts"] if h["status"] == "running"]
                    if running and not all(
                        h["started_at"] and h["ended_at"] is None for h in running
                    ):  # a host still in the stage, with what it printed so far
                        raise ValueError(f"a running host's times are wrong: {running}")
                return False

            eventually(ended, within=120, what=f"run {run} ended")
            # The cases were pending before they ran, and ran one after another.
            assert seen[0] == tuple(f"{c}:pending" for c in CASES) or seen[0][0].startswith(
                "greet:"
            )
            assert any("slow:running" in s for s in seen)
            assert any("greet:passed" in s and "talk:pending" in s for s in seen)
    finally:
        end_agents(agents)


@pytest.mark.parametrize("peers", ["before", "after"])
def test_a_lost_host_releases_its_peers_barrier_under_serve(
    served: Served, tmp_path: Path, peers: str
) -> None:
    """The peers reach `phalanx-sync` before the loss (1 s in; r1 is killed
    at ~2 s) or after it (10 s in; r1 is lost ~3 s after its kill)."""
    wait = "1" if peers == "before" else "10"
    repo = tmp_path / "defs" / "test-suites" / "lossy"
    (repo / "tc" / "a").mkdir(parents=True)
    (repo / "tc" / "a" / "run.sh").write_text(
        f"case @slavename@ in r1*) touch {tmp_path}/r1-started; sleep 60;;"
        f" *) sleep {wait}; touch {tmp_path}/@slavename@-at-barrier;; esac\n"
        "phalanx-sync done\necho released\n"
    )
    (repo / "suite.yaml").write_text("cluster: remote\ntimeout: 50\ntests: [a]\n")
    token = user_token(served, "otto", "operator")
    agents = remote_agents(served, tmp_path)
    try:
        with served.client(token) as client:
            eventually(
                lambda: "lossy" in [s["name"] for s in client.get("/api/suites").json()],
                what="the service seeing the new suite",
            )
            run = client.post("/api/suites/lossy/runs").json()["id"]
            eventually((tmp_path / "r1-started").exists, within=60, what="r1's stage starting")
            if peers == "before":  # at the barrier already (after: 10 s from now)
                eventually(
                    lambda: len(list(tmp_path.glob("*-at-barrier"))) == 2,
                    within=60,
                    what="the peers at the barrier",
                )
            killed_at = time.monotonic()
            os.killpg(agents[0].pid, signal.SIGKILL)
            document = wait_run(client, run, ENDED, within=60)
            took = time.monotonic() - killed_at
    finally:
        end_agents(agents)
    (case,) = document["cases"]
    (stage,) = case["stages"]
    by_host = {h["host"]: h for h in stage["hosts"]}
    assert by_host["r1.t.test"]["status"] == "error"
    assert by_host["r1.t.test"]["reason"].startswith("agent lost")
    for peer in HOSTS[1:]:
        assert by_host[peer]["status"] == "passed", by_host[peer]
        assert "released" in by_host[peer]["output_tail"]
    # Heartbeat 3 s: lost within ~3-4 s of the kill; the peers' sleep is 10 s
    # at most. Far below the 50 s stage timeout the bug waited for.
    assert took < 25, took


def test_the_api_event_stream_pushes_each_change(served: Served, tmp_path: Path) -> None:
    # Each case waits for the test to have read the document before it: the
    # stream is open and read whatever the machine's load, and each case's
    # end is a change it must push.
    repo = tmp_path / "defs" / "test-suites" / "gated"
    gate = tmp_path / "gate"
    gate.mkdir()
    cases = [f"c{i}" for i in range(4)]
    for i, name in enumerate(cases):
        (repo / "tc" / name).mkdir(parents=True)
        (repo / "tc" / name / "run.sh").write_text(
            f"while [ ! -e {gate}/{i} ]; do sleep 0.02; done\necho {name} done\n"
        )
    (repo / "suite.yaml").write_text(f"cluster: remote\ntimeout: 60\ntests: [{', '.join(cases)}]\n")
    token = user_token(served, "otto", "operator")
    agents = remote_agents(served, tmp_path)
    try:
        with served.client(token) as client:
            eventually(
                lambda: "gated" in [s["name"] for s in client.get("/api/suites").json()],
                what="the service seeing the new suite",
            )
            run = client.post("/api/suites/gated/runs").json()["id"]
            seen: list[tuple[str, int]] = []
            with (
                httpx.Client(
                    base_url=served.url, headers={"Authorization": f"Bearer {token}"}, timeout=120
                ) as streaming,
                streaming.stream("GET", f"/api/runs/{run}/events") as response,
            ):
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    document = json.loads(line[6:])
                    done = sum(c["status"] == "passed" for c in document["cases"])
                    seen.append((document["status"], done))
                    (gate / str(done)).touch()  # the next case may end now
            # A document after each case's end, in order, then the run's.
            ends = [done for _, done in seen]
            assert ends == sorted(ends)
            assert set(ends) == {0, 1, 2, 3, 4}, seen
            assert seen[-1] == ("passed", 4)
    finally:
        end_agents(agents)


def test_a_local_cluster_named_as_connected_remote_agents_is_refused_and_leaves_them_be(
    served: Served, tmp_path: Path
) -> None:
    """The service would have run `truth-local` on the remote agents
    connected under its hosts' names, and then shut them down."""
    token = user_token(served, "otto", "operator")
    agents = remote_agents(served, tmp_path)
    try:
        with served.client(token) as client:
            eventually(
                lambda: (
                    {a["name"] for a in client.get("/api/agents").json() if a["connected"]}
                    >= set(HOSTS)
                ),
                within=60,
                what="the remote agents connect",
            )
            run = client.post("/api/suites/truth-local/runs").json()["id"]
            document = wait_run(client, run, ENDED, within=120)
            assert document["status"] == "error", document
            assert "an agent of that name is connected already" in document["reason"]
            assert all(name in document["reason"] for name in HOSTS)
            assert hosts_of(document) == [] or all(
                h["status"] in ("error", "pending") for h in hosts_of(document)
            )
            # The remote agents were neither used nor shut down: their own
            # cluster's run still finds them.
            assert all(agent.poll() is None for agent in agents)
            run = client.post("/api/suites/truth-remote/runs").json()["id"]
            document = wait_run(client, run, ENDED, within=120)
            greet = next(c for c in document["cases"] if c["name"] == "greet")
            assert greet["status"] == "passed", document
    finally:
        end_agents(agents)
