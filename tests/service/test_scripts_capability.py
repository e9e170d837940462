"""A run's suite files are for that run's stages: they fetch them with the
run's own capability ($PHALANX_SCRIPTS_URL, @scripts_url@), anyone without it
is refused, and a big file is streamed within a bound, without holding up
the service."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from phalanx.coordinator.scripts import MAX_SCRIPT
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
            deadline = time.monotonic() + 60
            while client.get(f"/api/runs/{run}").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            guesses = [
                f"/scripts/{run}/0000/utils/helper.sh",
                f"/scripts/{run}/{'a' * 43}/utils/helper.sh",
                "/scripts/utils/helper.sh",
            ]
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


def test_big_files_do_not_hold_up_the_service(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "defs")
    (repo / "utils" / "big.bin").write_bytes(b"y" * BIG)
    (repo / "test-suites" / "hold" / "tc" / "a").mkdir(parents=True)
    (repo / "test-suites" / "hold" / "tc" / "a" / "run.sh").write_text(
        'echo "$PHALANX_SCRIPTS_URL" > ' + str(tmp_path / "url") + "\nsleep 30\n"
    )
    (repo / "test-suites" / "hold" / "suite.yaml").write_text("cluster: one\ntests: [a]\n")
    served = start(tmp_path, repo, tmp_path / "data")
    try:
        token = user_token(served, "otto", "operator")
        with served.client(token) as client:
            run = client.post("/api/suites/hold/runs").json()["id"]
            deadline = time.monotonic() + 60
            while not (tmp_path / "url").exists() or not (tmp_path / "url").read_text().strip():
                assert time.monotonic() < deadline
                time.sleep(0.05)
            keyed = (tmp_path / "url").read_text().strip() + "/utils/big.bin"
            legacy = served.url + "/showScript/utils/big.bin"  # by address: this machine's
            slowest = 0.0
            done = threading.Event()

            def fetch(url: str) -> None:
                with httpx.stream("GET", url, timeout=120) as answer:
                    assert answer.status_code == 200
                    for _ in answer.iter_bytes(65536):
                        time.sleep(0.001)  # a slow reader

            readers = [
                threading.Thread(target=fetch, args=(url,), daemon=True)
                for url in [keyed, legacy] * 4
            ]
            for reader in readers:
                reader.start()
            while any(r.is_alive() for r in readers):
                started = time.monotonic()
                assert httpx.get(served.url + "/healthz", timeout=30).status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.1)
            done.set()
            assert slowest < 1.0, slowest
            client.post(f"/api/runs/{run}/cancel")
    finally:
        stop(served)
