"""A run's suite files are for that run's stages: they fetch them with the
run's own capability ($PHALANX_SCRIPTS_URL, @scripts_url@), anyone without it
is refused, and a big file is streamed within a bound, without holding up
the service."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from phalanx.coordinator.scripts import MAX_SCRIPT
from tests.eventually import eventually
from tests.service.test_serve import make_repo, start, stop, user_token, wait_run

CHECK = """\
echo "URL $PHALANX_SCRIPTS_URL"
echo "TAG @scripts_url@"
curl -sf "$PHALANX_SCRIPTS_URL/utils/helper.sh"
echo "big $(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$PHALANX_SCRIPTS_URL/utils/big.bin")"
echo "huge $(curl -s -o /dev/null -w '%{http_code}' "$PHALANX_SCRIPTS_URL/utils/huge.bin")"
echo "forged $(curl -s -o /dev/null -w '%{http_code}' "${PHALANX_SCRIPTS_URL%/*}/0000/utils/helper.sh")"
echo "git $(curl -s -o /dev/null -w '%{http_code}' "$PHALANX_SCRIPTS_URL/.git/config")"
sleep 3
"""
BIG = 24 * 1024 * 1024


def test_a_runs_stages_fetch_its_files_with_its_capability_and_nobody_else(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "defs")
    (repo / "utils" / "big.bin").write_bytes(b"x" * BIG)
    with (repo / "utils" / "huge.bin").open("wb") as f:
        f.truncate(MAX_SCRIPT + 1)  # sparse: costs no disk
    (repo / "test-suites" / "cap" / "tc" / "a").mkdir(parents=True)
    (repo / "test-suites" / "cap" / "tc" / "a" / "run.sh").write_text(CHECK)
    (repo / "test-suites" / "cap" / "suite.yaml").write_text("cluster: one\ntests: [a]\n")
    served = start(tmp_path, repo, tmp_path / "data")
    try:
        token = user_token(served, "otto", "operator")
        with served.client(token) as client:
            run = client.post("/api/suites/cap/runs").json()["id"]
            # While the run is on, a process of this machine that is not one
            # of its stages: no capability, no file.
            eventually(
                lambda: client.get(f"/api/runs/{run}").json()["status"] == "running",
                within=60,
                what=f"run {run} running",
            )
            guesses = [
                f"/scripts/{run}/0000/utils/helper.sh",
                f"/scripts/{run}/{'a' * 43}/utils/helper.sh",
                "/scripts/utils/helper.sh",
            ]
            # The XrdTest route by address: this process comes from loopback,
            # as the run's local host does, but holds no capability of the run.
            legacy = client.get("/showScript/utils/helper.sh")
            assert legacy.status_code == 403, legacy.text
            for guess in guesses:
                refused = client.get(guess, follow_redirects=True)
                assert refused.status_code in (403, 404), (guess, refused.status_code)
            document = wait_run(client, run, ("passed", "failed", "error"))
            assert document["status"] == "passed", document
            output = client.get(
                f"/api/runs/{run}/output", params={"case": "a", "stage": "run", "host": "h1.t.test"}
            ).text
            url = output.splitlines()[0].removeprefix("URL ")
            assert url.startswith(served.url + f"/scripts/{run}/"), output
            assert f"TAG {url}" in output
            assert "echo a shared helper" in output
            assert f"big 200 {BIG}" in output
            assert "huge 413" in output
            assert "forged 403" in output
            assert "git 404" in output
            # the run is over: its capability is too
            assert httpx.get(url + "/utils/helper.sh", timeout=30).status_code == 403
    finally:
        stop(served)


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory, in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_big_files_are_streamed_not_held_in_memory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "defs")
    (repo / "utils" / "big.bin").write_bytes(b"y" * BIG)
    (repo / "test-suites" / "hold" / "tc" / "a").mkdir(parents=True)
    (repo / "test-suites" / "hold" / "tc" / "a" / "run.sh").write_text(
        'echo "$PHALANX_SCRIPTS_URL"\nsleep 60\n'
    )
    (repo / "test-suites" / "hold" / "suite.yaml").write_text("cluster: one\ntests: [a]\n")
    served = start(tmp_path, repo, tmp_path / "data")
    try:
        token = user_token(served, "otto", "operator")
        with served.client(token) as client:
            run = client.post("/api/suites/hold/runs").json()["id"]
            where = {"case": "a", "stage": "run", "host": "h1.t.test"}

            def printed() -> str:
                said = client.get(f"/api/runs/{run}/output", params=where)
                return said.text.strip() if said.is_success else ""

            # the stage prints its capability (it runs as another user than
            # this test where the service is root: it cannot write here)
            capability = eventually(printed, within=60, what="the stage's capability")
            before = _peak_rss(served.proc.pid)
            # 8 readers at once: 4 by the capability, 4 on the XrdTest route
            # from processes that hold it in their environment, as stages do.
            readers = [
                subprocess.Popen(
                    [
                        "curl",
                        "-s",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code} %{size_download}",
                        url,
                        "--limit-rate",
                        "20M",
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "PHALANX_SCRIPTS_URL": capability},
                )
                for url in [capability + "/utils/big.bin", served.url + "/showScript/utils/big.bin"]
                * 4
            ]
            for reader in readers:
                out, _ = reader.communicate(timeout=300)
                assert out == f"200 {BIG}", out
            assert httpx.get(served.url + "/healthz", timeout=30).status_code == 200
            grown = _peak_rss(served.proc.pid) - before
            assert grown < 2 * BIG, f"the service grew by {grown} bytes serving 8 x {BIG}"
            client.post(f"/api/runs/{run}/cancel")
    finally:
        stop(served)
