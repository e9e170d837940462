"""`phalanx serve` over TLS with a CA made by `phalanx ca`: agents and
`phalanx submit` given the CA connect and run suites, an agent without it
is refused with a certificate error, and no secret reaches a log."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from tests.eventually import eventually
from tests.processes import gone
from tests.service.test_admin import PASSWORD, phalanx
from tests.service.test_serve import make_repo

NAME = "r1.t.test"


def test_agents_and_submit_trust_the_service_through_the_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    for args in (("ca", "init"), ("ca", "issue", "127.0.0.1", "--ip", "127.0.0.1")):
        done = phalanx(*args, "--dir", str(ca), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}

    def admin(*args: str, stdin: str = "") -> str:
        done = phalanx(*args, "--data", str(data), cwd=tmp_path, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    repo = make_repo(tmp_path / "defs")
    # Stage scripts reach the service's web routes (/showScript) over https.
    proto = repo / "test-suites" / "proto"
    (proto / "tc" / "a").mkdir(parents=True)
    (proto / "tc" / "a" / "run.sh").write_text('test "@proto@" = https\n')
    (proto / "suite.yaml").write_text("cluster: one\ntests: [a]\ntimeout: 60\n")
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "phalanx.cli", "serve", "--repo", str(repo),
             "--listen", "127.0.0.1:0", "--data", str(data)],
            cwd=tmp_path, stdout=out, stderr=out, text=True,
            env=clean | {"PHALANX_CONNECT_TIMEOUT": "20",
                         "PHALANX_TLS_CERT": str(ca / "127.0.0.1.pem"),
                         "PHALANX_TLS_KEY": str(ca / "127.0.0.1-key.pem")},
        )  # fmt: skip
    agents: list[subprocess.Popen[bytes]] = []
    try:

        def listening() -> bool:
            assert serve.poll() is None, log.read_text()  # it did not stop meanwhile
            return "listening on https://" in log.read_text()

        eventually(listening, within=60, what="phalanx serve listening on https")
        url = log.read_text().split("listening on ", 1)[1].split()[0]
        with httpx.Client(
            verify=ssl.create_default_context(cafile=ca / "ca.pem"), timeout=30
        ) as client:
            assert client.get(f"{url}/healthz").json() == {"status": "ok"}
        admin("user", "add", "otto", "--role", "operator", stdin=PASSWORD + "\n")
        (tmp_path / "user.token").write_text(admin("user", "token", "otto"))
        (tmp_path / "agent.token").write_text(admin("token", "create", NAME))
        agent = [sys.executable, "-m", "phalanx.cli", "agent", "--coordinator",
                 url.replace("https://", "wss://") + "/agent", "--name", NAME,
                 "--workdir", str(tmp_path), "--token-file", str(tmp_path / "agent.token")]  # fmt: skip

        # Without the CA the agent cannot trust the service, says so, and exits.
        untrusting = subprocess.run(agent, capture_output=True, text=True, timeout=60, env=clean)
        assert untrusting.returncode != 0
        assert "cannot verify the coordinator's TLS certificate" in untrusting.stderr
        assert "--ca" in untrusting.stderr

        agents.append(
            subprocess.Popen(
                [*agent, "--ca", str(ca / "ca.pem")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=clean,
            )
        )
        submit = [sys.executable, "-m", "phalanx.cli", "submit", "--coordinator", url,
                  "--token-file", str(tmp_path / "user.token"), "--wait"]  # fmt: skip
        # A remote agent's suite, and a local one (the service's own agents over wss).
        for suite in ("far", "good", "proto"):
            done = subprocess.run(
                [*submit, suite, "--ca", str(ca / "ca.pem")],
                capture_output=True, text=True, timeout=120, env=clean,
            )  # fmt: skip
            assert done.returncode == 0, (suite, done.stdout, done.stderr, log.read_text())
        # `submit` without the CA does not trust the service either.
        refused = subprocess.run(
            [*submit, "good"], capture_output=True, text=True, timeout=60, env=clean
        )
        assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    finally:
        for proc in agents:
            proc.send_signal(signal.SIGTERM)
            if not gone(proc.pid, 10):
                proc.kill()
            proc.wait(10)
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
    text = log.read_text()
    assert "phx_agent_" not in text and "phx_user_" not in text
    assert "PRIVATE KEY" not in text
