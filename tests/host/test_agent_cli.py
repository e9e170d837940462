"""`phalanx agent` as a user starts it: the coordinator's address as
`phalanx submit` takes it (http) or its endpoint (ws), and, without -v,
a line when it connects, when the coordinator cannot be reached (and that
it retries), when the connection is lost, and when it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.host.__main__ import main
from phalanx.host.endpoint import BadURL, websocket_url
from tests.eventually import eventually, never
from tests.processes import gone
from tests.service.test_serve import make_repo, start, stop


@pytest.mark.parametrize("bad", ["rack", "=r1", ""])
def test_a_label_must_be_key_equals_value(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--coordinator", "ws://127.0.0.1:1/agent", "--name", "h1", "--label", bad])
    assert exited.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "endpoint"),
    [
        ("http://10.0.0.5:8470", "ws://10.0.0.5:8470/agent"),
        ("http://10.0.0.5:8470/", "ws://10.0.0.5:8470/agent"),
        ("https://ci.example.org", "wss://ci.example.org/agent"),
        ("https://ci.example.org/phalanx/", "wss://ci.example.org/phalanx/agent"),
        ("ws://10.0.0.5:8470/agent", "ws://10.0.0.5:8470/agent"),
        ("WSS://ci.example.org:443/agent/", "wss://ci.example.org:443/agent"),
    ],
)
def test_the_agent_endpoint_is_derived_from_the_services_address(given: str, endpoint: str) -> None:
    assert websocket_url(given, "/agent") == endpoint


@pytest.mark.parametrize("bad", ["10.0.0.5:8470", "ftp://10.0.0.5/agent", "http://"])
def test_an_address_that_is_no_coordinators_is_a_usage_error(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(BadURL):
        websocket_url(bad, "/agent")
    with pytest.raises(SystemExit) as exited:
        main(["--coordinator", bad, "--name", "h1"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--coordinator: expected http(s)://HOST:PORT or ws(s)://HOST:PORT/agent" in err
    assert "Traceback" not in err


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], within: float = 60) -> str:
    def said() -> str | None:
        seen = log.read_text()
        if text in seen:
            return seen
        assert proc.poll() is None or text in log.read_text(), seen  # it ended without saying it
        return None

    return eventually(said, within=within, what=f"{text!r} in {log}")


def test_an_agent_given_http_connects_and_says_so_without_v(tmp_path: Path) -> None:
    served = start(tmp_path, make_repo(tmp_path / "defs"), tmp_path / "data")
    try:
        (tmp_path / "agent.token").write_text(served.admin("token", "create", "r1.t.test"))
        endpoint = served.url.replace("http://", "ws://") + "/agent"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
        log = tmp_path / "agent.log"
        with log.open("wb") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "phalanx.cli", "agent", "--coordinator", served.url,
                 "--name", "r1.t.test", "--token-file", str(tmp_path / "agent.token"),
                 "--workdir", str(tmp_path / "work")],
                stdout=out, stderr=subprocess.STDOUT, env=clean, start_new_session=True,
            )  # fmt: skip
        try:
            _wait_for(log, f"connected to the coordinator at {endpoint}", agent)
            stop(served)  # the coordinator goes away: the agent says so and retries
            _wait_for(log, "lost the connection to the coordinator", agent)
            seen = _wait_for(log, f"cannot reach the coordinator at {endpoint}", agent)
            assert "retrying every 5s at most" in seen
            never(  # several retries fail meanwhile: said once
                lambda: log.read_text().count("cannot reach the coordinator") > 1,
                window=3,
                what="'cannot reach the coordinator' said again",
            )
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(30) == -signal.SIGTERM  # ended as SIGTERM ends it
            assert "agent stopped (SIGTERM)" in log.read_text()
            assert "Traceback" not in log.read_text()
            assert "phx_agent_" not in log.read_text()  # the token is never printed
        finally:
            if agent.poll() is None:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait(10)
            assert gone(agent.pid, 10)
    finally:
        stop(served)
